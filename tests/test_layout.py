"""The installed packages are this checkout's, and only the six packages are importable."""

from __future__ import annotations

import importlib
import importlib.util
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_contracts", "features", "training", "serving", "pipelines", "simulator")


@pytest.mark.parametrize("name", PACKAGES)
def test_package_is_imported_from_this_checkout(name: str) -> None:
    module = importlib.import_module(name)
    assert Path(module.__file__ or "").resolve() == ROOT / name / "__init__.py"


def test_package_init_files_are_light() -> None:
    """Importing a package must not pull pandas in (the CLI's --help stays instant)."""
    import subprocess
    import sys

    code = (
        "import sys; import " + ", ".join(PACKAGES) + "; "
        "print('pandas' in sys.modules, 'pandera' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["False", "False"]


def test_lazy_public_api_of_data_contracts() -> None:
    import data_contracts

    assert set(data_contracts.__all__) <= set(dir(data_contracts)) | set(data_contracts._EXPORTS)
    assert data_contracts.validate_tables.__name__ == "validate_tables"
    with pytest.raises(AttributeError):
        _ = data_contracts.not_a_thing
