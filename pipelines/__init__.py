"""End-to-end runs behind the `cobranza` command line, and the portfolio simulator.

Only this package and `serving` read and write files, stores and registries.
"""

import os as _os

# See training/__init__.py: LightGBM's OpenMP threads must wait passively to share the cores.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

CRASH_AT = "COBRANZA_TEST_CRASH_AT"


def crash_point(stage: str) -> None:
    """Test hook: kill this process with SIGKILL at the named stage when the environment
    variable COBRANZA_TEST_CRASH_AT names it, as a power cut or the OOM killer would.

    Tests use it to stop a writer at a precise point and check what readers and the next run
    see; unset (always, outside those tests) it does nothing.
    """
    if _os.environ.get(CRASH_AT) == stage:
        import signal

        _os.kill(_os.getpid(), signal.SIGKILL)
