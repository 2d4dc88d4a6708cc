"""`cobranza train`, `evaluate` and `promote` as a data scientist runs them (real processes,
the embedded MLflow store under the data folder)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COBRANZA = str(Path(sys.executable).with_name("cobranza"))
QUICK = {
    "name": "cli-quick",
    "split": {"valid_periods": 4, "test_periods": 4},
    "lightgbm": {"n_estimators": 60, "learning_rate": 0.1, "num_leaves": 7},
    "search_space": {"num_leaves": {"low": 4, "high": 15, "integer": True}},
    "tuning": {"trials": 1},
}


def run(data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COBRANZA_TRAINING__DATA_ROOT": str(data_root)}
    env.pop("COBRANZA_TRAINING__TRACKING_URI", None)
    return subprocess.run([COBRANZA, *args], capture_output=True, text=True, timeout=600, env=env)


def test_train_evaluate_promote_from_the_command_line(
    featured_portfolio: Path, tmp_path: Path
) -> None:
    experiment = tmp_path / "quick.yaml"
    experiment.write_text(yaml.safe_dump(QUICK))
    data = tmp_path / "data"
    args = ("--data", str(featured_portfolio), "--experiment", str(experiment))
    done = run(data, "train", *args)
    assert done.returncode == 0, done.stderr
    assert "test_roc_auc" in done.stdout and "nba_policy_dr" in done.stdout
    assert "registered: propensity v1, next-best-action v1" in done.stdout
    assert (data / "mlflow" / "mlflow.db").is_file()  # embedded store, no server
    lines = (data / "mlflow" / "registry_audit.jsonl").read_text().splitlines()
    audit = [json.loads(line) for line in lines]
    assert [entry["action"] for entry in audit] == ["set_champion", "set_champion"]

    done = run(data, "evaluate", *args, "--model", "champion")
    assert done.returncode == 0, done.stderr
    assert "propensity v1" in done.stdout and "roc_auc" in done.stdout
    assert "next-best-action v1" in done.stdout and "policy_dr" in done.stdout
    done = run(data, "evaluate", *args, "--which", "next-best-action")
    assert done.returncode == 0, done.stderr
    assert "contact_roc_auc" in done.stdout and "propensity v1" not in done.stdout

    done = run(data, "promote", *args, "--which", "propensity")
    assert done.returncode == 0, done.stderr  # nothing to promote: the champion stays
    assert "no challenger to promote; champion is v1" in done.stdout

    # the manager's audit of the champion: a report per version, honest model not flagged
    reports = tmp_path / "reports"
    done = run(data, "audit", *args, "--model", "champion", "--out", str(reports))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Audit of cobranza-propensity v1" in done.stdout and "group fairness" in done.stdout
    assert (reports / "cobranza-propensity-v1" / "audit.html").is_file()
    summary = json.loads((reports / "cobranza-propensity-v1" / "audit.json").read_text())
    assert summary["protected_inputs"] == [] and summary["verdict"] in {"pass", "watch"}

    # the operation's KPIs, as tables and plots
    kpis = tmp_path / "kpis"
    done = run(data, "kpis", "--data", str(featured_portfolio), "--out", str(kpis))
    assert done.returncode == 0, done.stderr
    assert "Collection KPIs per week" in done.stdout and "right-party-contact" in done.stdout
    assert {"weekly.csv", "channels.csv", "roll_rates.csv", "blocked.csv"} <= {
        p.name for p in kpis.iterdir()
    }
    assert any(p.suffix == ".png" for p in kpis.iterdir())
    done = run(data, "kpis", "--data", str(featured_portfolio), "--from", "someday")
    assert done.returncode == 2 and "--from" in done.stderr
    done = run(data, "kpis", "--from", "2025-12-01", "--to", "2025-11-01")
    assert done.returncode == 2 and "is not before --to" in done.stderr
    done = run(data, "kpis", "--data", str(featured_portfolio), "--out", str(experiment))
    assert done.returncode == 2 and "is a file, not a folder" in done.stderr
    done = run(data, "audit", *args, "--rules", str(experiment))
    assert done.returncode == 2 and "contact rules" in done.stderr
    assert "Traceback" not in done.stderr

    # the service starts on the portfolio, answers a worklist, and stops
    done = run(data, "features", "materialize", str(featured_portfolio))
    assert done.returncode == 0, done.stderr
    done = run(data, "worklist", "--portfolio", str(featured_portfolio), "--call", "10")
    assert done.returncode == 0, done.stderr
    assert "Worklist for" in done.stdout and "scheduled" in done.stdout


def test_training_errors_are_one_line_messages(tmp_path: Path) -> None:
    data = tmp_path / "data"
    done = run(data, "train", "--data", str(tmp_path / "nowhere"))
    assert done.returncode == 2
    assert "no snapshots" in done.stderr and "Traceback" not in done.stderr
    bad = tmp_path / "bad.yaml"
    bad.write_text("lightgbm: {}\ncalibration: magic\n")
    done = run(data, "train", "--data", str(tmp_path), "--experiment", str(bad))
    assert done.returncode == 2
    assert "calibration" in done.stderr and "Traceback" not in done.stderr
    done = run(data, "evaluate", "--data", str(tmp_path), "--which", "propensity")
    assert done.returncode == 2 and "Traceback" not in done.stderr
