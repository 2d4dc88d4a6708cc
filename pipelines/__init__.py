"""End-to-end runs behind the `cobranza` command line, and the portfolio simulator.

Only this package and `serving` read and write files, stores and registries.
"""

import fcntl as _fcntl
import os as _os
from collections.abc import Iterator as _Iterator
from contextlib import contextmanager as _contextmanager
from pathlib import Path as _Path

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


@_contextmanager
def folder_lock(folder: _Path, wait: bool = True) -> _Iterator[bool]:
    """Hold an exclusive advisory lock (flock) on a folder while the block runs; yields
    whether it was acquired (always True when waiting).

    The lock is on the folder itself, so nothing is left on disk, and the kernel drops it when
    the process dies, even by SIGKILL: a temporary folder nobody holds a lock on belongs to a
    run that is gone, and may be removed.
    """
    descriptor = _os.open(folder, _os.O_RDONLY)
    try:
        try:
            _fcntl.flock(descriptor, _fcntl.LOCK_EX | (0 if wait else _fcntl.LOCK_NB))
        except BlockingIOError:
            yield False
            return
        yield True
    finally:
        _os.close(descriptor)
