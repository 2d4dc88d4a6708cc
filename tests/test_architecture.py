"""The layering is a checked rule: import contracts (lint-imports), a service that loads no
training code, one definition of each shared name, and functions short enough to read."""

from __future__ import annotations

import ast
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("data_contracts", "features", "training", "serving", "pipelines", "simulator")
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")
MAX_FUNCTION_LINES = 80


def _modules(package: str) -> set[str]:
    names = set()
    for path in (ROOT / package).rglob("*.py"):
        parts = path.relative_to(ROOT).with_suffix("").parts
        names.add(".".join(parts[:-1] if parts[-1] == "__init__" else parts))
    return names


def _lint_imports(root: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [str(LINT_IMPORTS), "--no-cache"],
        cwd=root,
        env={"PYTHONPATH": str(root), "PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_the_import_contracts_hold() -> None:
    done = _lint_imports(ROOT)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "0 broken" in done.stdout


@pytest.mark.parametrize(
    ("module", "wrong_import", "broken"),
    [
        ("features/history.py", "from pipelines.registry import CHAMPION", "features"),
        ("simulator/population.py", "from features.catalog import ALL_FEATURES", "simulator"),
        ("serving/metrics.py", "from training.metrics import is_better", "serving uses"),
        ("pipelines/kpis.py", "from serving.worklist import build_worklist", "pipelines never"),
    ],
)
def test_a_wrong_way_import_breaks_a_contract(
    tmp_path: Path, module: str, wrong_import: str, broken: str
) -> None:
    for package in PACKAGES:
        shutil.copytree(ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("*.pyc"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path / "pyproject.toml")
    with (tmp_path / module).open("a") as source:
        source.write(f"\n{wrong_import}  # the wrong way\n")
    done = _lint_imports(tmp_path)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "1 broken" in done.stdout
    broken_section = done.stdout.split("Broken contracts", 1)[1]
    assert broken in broken_section
    assert module.removesuffix(".py").replace("/", ".") in broken_section


def test_the_serving_contract_names_every_other_pipelines_module() -> None:
    """A new pipelines module is forbidden to serving until it is deliberately allowed."""
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
    (contract,) = [c for c in config["contracts"] if c.get("source_modules") == ["serving"]]
    forbidden = set(contract["forbidden_modules"])
    top_level = {m for m in _modules("pipelines") if m.count(".") == 1}
    allowed = {"pipelines.registry", "pipelines.feature_store"}
    assert top_level - allowed == forbidden & top_level
    assert {"training", "simulator"} <= forbidden


def test_the_service_loads_no_training_or_simulator_code() -> None:
    code = (
        "import sys, serving.app, serving.service, serving.routes, serving.worklist; "
        "print(sorted({m.split('.')[0] for m in sys.modules} & {'training', 'simulator'}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def _definitions(name: str) -> list[str]:
    found = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.parse(path.read_text()).body:
                targets = (
                    node.targets
                    if isinstance(node, ast.Assign)
                    else [node.target]
                    if isinstance(node, ast.AnnAssign)
                    else []
                )
                if any(isinstance(t, ast.Name) and t.id == name for t in targets):
                    found.append(str(path.relative_to(ROOT)))
    return found


@pytest.mark.parametrize(
    ("name", "home"),
    [
        ("CHANNELS", "data_contracts/vocabulary.py"),
        ("OPT_OUT_CHANNELS", "data_contracts/vocabulary.py"),
        ("OUTCOMES", "data_contracts/vocabulary.py"),
        ("ACTION_COLUMNS", "training/labels.py"),
        ("TELEPHONE_CONVERSATIONS", "data_contracts/vocabulary.py"),
        ("RESPONSE_OUTCOMES", "data_contracts/vocabulary.py"),
        ("NOT_REACHED_OUTCOMES", "data_contracts/vocabulary.py"),
        ("DEFAULT_RULES_FILE", "data_contracts/contact_rules.py"),
        ("AUDIT_ONLY_COLUMNS", "data_contracts/schemas.py"),
        ("PROTECTED_ATTRIBUTES", "data_contracts/schemas.py"),
    ],
)
def test_each_shared_name_is_defined_once(name: str, home: str) -> None:
    assert _definitions(name) == [home]


def test_no_function_is_longer_than_a_screen() -> None:
    long = []
    for package in PACKAGES:
        for path in (ROOT / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef):
                    lines = (node.end_lineno or node.lineno) - node.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        long.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.name} {lines}")
    assert long == []


def test_the_models_satisfy_the_protocols_serving_calls() -> None:
    from training.interfaces import ActionModel, RowEncoder, ScoringModel
    from training.model import FrameEncoder, NextBestActionModel, PropensityModel

    def members(protocol: type) -> set[str]:
        return {n for n in vars(protocol) if not n.startswith("_") or n.endswith("_")} | set(
            getattr(protocol, "__annotations__", {})
        )

    for model, protocol in (
        (PropensityModel, ScoringModel),
        (NextBestActionModel, ActionModel),
        (FrameEncoder, RowEncoder),
    ):
        methods = {n for n in members(protocol) if callable(getattr(protocol, n, None))}
        assert methods, protocol
        for name in methods:
            assert callable(getattr(model, name, None)), f"{model.__name__}.{name}"


def test_every_model_kind_is_registered_under_a_name() -> None:
    from pipelines.registry import MODEL_NAMES
    from training.model import NextBestActionModel, PropensityModel
    from training.pyfunc import MODEL_KINDS, kind_of

    assert set(MODEL_KINDS) == set(MODEL_NAMES)
    assert kind_of(PropensityModel()).name == "propensity"
    assert kind_of(NextBestActionModel()).name == "next-best-action"
    for kind in MODEL_KINDS.values():
        assert callable(getattr(kind.model_class, kind.output))
    with pytest.raises(TypeError, match="not a registered model kind"):
        kind_of(object())
