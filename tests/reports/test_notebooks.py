"""The notebooks run top to bottom on a real portfolio and registry, are stored without
outputs, and use only the packages' public names."""

from __future__ import annotations

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.reports.conftest import REPO, RULES, Registry

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NOTEBOOKS = sorted((REPO / "notebooks").glob("*.ipynb"))
PACKAGES = ("data_contracts", "features", "training", "serving", "pipelines")


def test_there_is_an_exploration_and_a_fairness_notebook() -> None:
    assert {p.stem for p in NOTEBOOKS} == {"exploration", "fairness_audit"}


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_are_stored_clean_and_use_the_public_api(path: Path) -> None:
    book = nbformat.read(path, as_version=4)
    nbformat.validate(book)
    code = [cell for cell in book.cells if cell.cell_type == "code"]
    assert code and all(not c.outputs and c.execution_count is None for c in code)
    source = "\n".join(c.source for c in code)
    imports = re.findall(rf"from ({'|'.join(PACKAGES)})[\w.]* import ([^\n]+)", source)
    assert imports
    for module, names in imports:
        assert not any(n.strip().startswith("_") for n in names.split(",")), (module, names)
    assert not re.search(rf"({'|'.join(PACKAGES)})\.\w*\._", source)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebooks_execute(
    path: Path, registry: Registry, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("COBRANZA_NOTEBOOK_PORTFOLIO", str(registry.portfolio))
    monkeypatch.setenv("COBRANZA_NOTEBOOK_TRACKING_URI", registry.tracking_uri)
    monkeypatch.setenv("COBRANZA_NOTEBOOK_RULES", str(RULES))
    monkeypatch.setenv("MPLBACKEND", "module://matplotlib_inline.backend_inline")
    book = nbformat.read(path, as_version=4)
    NotebookClient(
        book, timeout=600, kernel_name="python3", resources={"metadata": {"path": str(REPO)}}
    ).execute()
    outputs = [o for cell in book.cells if cell.cell_type == "code" for o in cell.outputs]
    assert not [o for o in outputs if o.output_type == "error"]
    pictures = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(pictures) >= 2
    text = "\n".join(str(o.get("text", "")) + str(o.get("data", {})) for o in outputs)
    if path.stem == "fairness_audit":
        assert "verdict with the planted bias: flag" in text
        assert "protected attributes among them: none" in text
