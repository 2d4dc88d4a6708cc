"""The README's "Bring your own data" section, followed literally: its shell commands, run in
order in a fresh folder holding the example export, all succeed, and do what the text says."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
SECTION = "## Bring your own data"


def section_commands() -> list[str]:
    """Every command line of the section's bash blocks, in order."""
    readme = (ROOT / "README.md").read_text()
    assert SECTION in readme
    section = readme.split(SECTION, 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```bash\n(.*?)```", section, flags=re.DOTALL)
    lines = [line.strip() for block in blocks for line in block.splitlines()]
    return [line for line in lines if line and not line.startswith("#")]


@pytest.mark.slow
@pytest.mark.integration
def test_the_readme_section_runs_as_written(tmp_path: Path) -> None:
    commands = section_commands()
    assert commands[0].endswith("--dry-run") and "train" in " ".join(commands)
    for folder in ("examples", "experiments"):
        shutil.copytree(ROOT / folder, tmp_path / folder)
    (tmp_path / ".venv").symlink_to(Path(sys.executable).parents[1])
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRANZA_")}
    outputs = []
    for command in commands:
        done = subprocess.run(
            ["bash", "-c", command], cwd=tmp_path, env=env, capture_output=True, text=True,
            timeout=600,
        )  # fmt: skip
        assert done.returncode == 0, f"{command}\n{done.stdout}\n{done.stderr}"
        outputs.append(done.stdout)
        if command.endswith("--dry-run"):
            assert not (tmp_path / "data").exists()  # a dry run writes nothing
            assert "every value found in a value map" in done.stdout

    manifest = json.loads((tmp_path / "data/agency/manifest.json").read_text())
    assert manifest["action_probability"] == "unknown"
    assert manifest["tables_not_mapped"] == ["offers", "promises", "statements", "account_events"]
    assert manifest["rows"]["contacts"] > 1000
    assert "propensity v1" in outputs[-1]
    refused = subprocess.run(
        [".venv/bin/cobranza", "evaluate", "--data", "data/agency", "--which", "both"],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=600,
    )  # fmt: skip
    assert refused.returncode == 2
    assert "off-policy estimates refused" in " ".join(refused.stderr.split())


def test_the_example_files_are_what_the_generator_writes(tmp_path: Path) -> None:
    """The shipped CSV files are reproducible from the simulator (no hand edits)."""
    sys.path.insert(0, str(ROOT / "examples" / "mappings"))
    try:
        import make_dialer_ledger as generator
    finally:
        sys.path.pop(0)
    from simulator import SimulationConfig, simulate_portfolio

    simulated = simulate_portfolio(SimulationConfig(accounts=100, seed=7))
    for name, frame in generator.export(simulated.tables).items():
        frame.to_csv(tmp_path / name, index=False)
        shipped = (ROOT / "examples/mappings/dialer-ledger" / name).read_bytes()
        assert (tmp_path / name).read_bytes() == shipped, name
