"""End-to-end runs behind the `cobranza` command line, and the portfolio simulator.

Only this package and `serving` read and write files, stores and registries.
"""

import os as _os

# See training/__init__.py: LightGBM's OpenMP threads must wait passively to share the cores.
_os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
