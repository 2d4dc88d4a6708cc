"""The command line end to end, as a user runs it (separate processes, real files)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

pytestmark = pytest.mark.integration

COBRANZA = str(Path(sys.executable).with_name("cobranza"))


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COBRANZA, *args], capture_output=True, text=True, timeout=300)


@pytest.fixture(scope="module")
def portfolio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("cli") / "portfolio"
    done = run(
        "simulate", "--accounts", "300", "--seed", "4", "--days", "120", "--out", str(folder)
    )
    assert done.returncode == 0, done.stderr
    assert "300 accounts" in done.stdout
    return folder


def test_help_does_not_import_heavy_libraries() -> None:
    heavy = "{'pandas', 'pandera', 'feast', 'mlflow', 'lightgbm'}"
    code = f"import sys, pipelines.cli; print(sorted({heavy} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
    for args in (
        ["--help"],
        ["simulate", "--help"],
        ["validate", "--help"],
        ["import", "taiwan", "--help"],
    ):
        done = run(*args)
        assert done.returncode == 0 and "Usage" in done.stdout, args


def test_simulate_writes_contracts_manifest_and_truth(portfolio: Path) -> None:
    for table in ("debtors", "accounts", "payments", "contacts", "offers", "promises"):
        assert (portfolio / f"{table}.parquet").is_file()
    manifest = json.loads((portfolio / "manifest.json").read_text())
    assert manifest["rows"]["accounts"] == 300
    assert (portfolio / "truth" / "params.json").is_file()
    assert (portfolio / "truth" / "contacts.parquet").is_file()


def test_validate_a_clean_portfolio_exits_0(portfolio: Path, tmp_path: Path) -> None:
    done = run("validate", str(portfolio), "--quarantine", str(tmp_path / "q"))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((tmp_path / "q" / "report.json").read_text())
    assert report["reconciles"] and report["quarantined_rows"] == 0


def copy_of(portfolio: Path, bad: Path) -> Path:
    """The portfolio's tables and manifest copied to `bad`, to be spoiled by a test."""
    bad.mkdir()
    for file in [*portfolio.glob("*.parquet"), portfolio / "manifest.json"]:
        (bad / file.name).write_bytes(file.read_bytes())
    return bad


def test_validate_quarantines_bad_rows_and_exits_1(portfolio: Path, tmp_path: Path) -> None:
    bad = copy_of(portfolio, tmp_path / "bad")
    payments = pd.read_parquet(bad / "payments.parquet")
    payments.loc[[0, 5], "amount"] = -10.0
    payments["account_id"] = payments["account_id"].astype(object)
    payments.loc[7, "account_id"] = "999999"
    payments.to_parquet(bad / "payments.parquet")
    done = run("validate", str(bad))
    assert done.returncode == 1, done.stdout + done.stderr
    # the console names the rules (a narrow terminal may wrap a rule from its count)
    assert "amount:greater_than(0)" in done.stdout and "unknown_account (1)" in done.stdout
    quarantined = pd.read_parquet(bad / "quarantine" / "payments.parquet")
    assert sorted(quarantined["source_row"]) == [0, 5, 7]
    report = json.loads((bad / "quarantine" / "report.json").read_text())
    table = report["tables"]["payments"]
    assert table["rows_per_rule"] == {"amount:greater_than(0)": 2, "unknown_account": 1}
    assert table["input_rows"] == table["valid_rows"] + table["quarantined_rows"] == len(payments)
    assert "-10.0" not in done.stdout  # values stay in the quarantine file, not in the log


def test_invalid_audit_values_are_nulled_and_the_portfolio_stays_valid(
    portfolio: Path, tmp_path: Path
) -> None:
    bad = copy_of(portfolio, tmp_path / "bad")
    debtors = pd.read_parquet(bad / "debtors.parquet")
    debtors["gender"] = debtors["gender"].astype(object)
    debtors.loc[::2, "gender"] = "F"  # every other debtor: a code the contract does not know
    debtors.to_parquet(bad / "debtors.parquet")
    done = run("validate", str(bad))
    assert done.returncode == 0, done.stdout + done.stderr
    flagged = len(debtors[::2])
    assert f"nulled: debtors.gender: {flagged} audit-only value(s)" in " ".join(done.stdout.split())
    assert "first rows 0 (value 'F'), 2 (value 'F')" in " ".join(done.stdout.split())
    report = json.loads((bad / "quarantine" / "report.json").read_text())
    assert report["quarantined_rows"] == 0 and report["nulled_values"] == flagged
    (notice,) = report["tables"]["debtors"]["nulled_values"]
    assert notice["rule"] == "audit_value_invalid" and notice["column"] == "gender"
    assert notice["rows"] == flagged and notice["first_rows"][0] == {"row": 0, "value": "F"}
    for table in ("accounts", "contacts", "payments"):
        counts = report["tables"][table]
        assert counts["valid_rows"] == counts["input_rows"], table


def test_a_contact_at_night_is_a_compliance_warning_not_an_error(
    portfolio: Path, tmp_path: Path
) -> None:
    bad = copy_of(portfolio, tmp_path / "bad")
    contacts = pd.read_parquet(bad / "contacts.parquet")
    accounts = pd.read_parquet(bad / "accounts.parquet").set_index("account_id")
    debtors = pd.read_parquet(bad / "debtors.parquet").set_index("debtor_id")
    row = int(
        contacts.index[(contacts["direction"] == "outbound") & (contacts["channel"] == "sms")][0]
    )
    zone = str(debtors.loc[accounts.loc[contacts.loc[row, "account_id"], "debtor_id"], "timezone"])
    local = contacts.loc[row, "attempted_at"].tz_convert(zone).replace(hour=23, minute=15)
    contacts.loc[row, "attempted_at"] = local.tz_convert("UTC")
    contacts.to_parquet(bad / "contacts.parquet")
    before = json.loads(run_validate_report(portfolio, tmp_path / "q0"))
    done = run("validate", str(bad))
    assert done.returncode == 0, done.stdout + done.stderr
    report = json.loads((bad / "quarantine" / "report.json").read_text())
    assert report["quarantined_rows"] == 0
    (night,) = [
        w
        for w in report["tables"]["contacts"]["compliance_warnings"]
        if w["rule"] == "outside_contact_hours"
    ]
    (earlier,) = [
        w
        for w in before["tables"]["contacts"]["compliance_warnings"]
        if w["rule"] == "outside_contact_hours"
    ] or [{"rows": 0, "first_rows": []}]
    assert night["rows"] == earlier["rows"] + 1
    # the first rows of the old breaches and the new one, in row order
    expected = sorted([r["row"] for r in earlier["first_rows"]] + [row])[:5]
    assert [r["row"] for r in night["first_rows"]] == expected
    if row in expected:
        (shown,) = [r for r in night["first_rows"] if r["row"] == row]
        assert shown["local_time"].startswith(f"{local:%Y-%m-%d}T23:15:00")
    assert "warning: compliance:" in done.stdout
    assert "contacts outside the allowed local hours (outside_contact_hours" in " ".join(
        done.stdout.split()
    )


def run_validate_report(folder: Path, quarantine: Path) -> str:
    assert run("validate", str(folder), "--quarantine", str(quarantine)).returncode == 0
    return (quarantine / "report.json").read_text()


@pytest.mark.parametrize(
    "damage", ["missing_file", "missing_column", "unreadable_file", "no_folder"]
)
def test_unusable_input_exits_2_with_a_clear_message(
    portfolio: Path, tmp_path: Path, damage: str
) -> None:
    bad = copy_of(portfolio, tmp_path / "bad")
    expected = {
        "missing_file": "contacts.parquet: file not found",
        "missing_column": "accounts.parquet: missing column(s) placed_at",
        "unreadable_file": "payments.parquet: cannot be read as parquet",
        "no_folder": "portfolio folder not found",
    }[damage]
    target = bad
    if damage == "missing_file":
        (bad / "contacts.parquet").unlink()
    elif damage == "missing_column":
        accounts = pd.read_parquet(bad / "accounts.parquet").drop(columns=["placed_at"])
        accounts.to_parquet(bad / "accounts.parquet")
    elif damage == "unreadable_file":
        (bad / "payments.parquet").write_text("id,amount\n1,2\n")
    else:
        target = tmp_path / "nowhere"
    done = run("validate", str(target))
    assert done.returncode == 2
    assert expected in " ".join(done.stderr.split())
    assert "Traceback" not in done.stderr


def test_every_missing_file_and_column_is_named_in_one_run(portfolio: Path, tmp_path: Path) -> None:
    bad = tmp_path / "acme"
    bad.mkdir()
    for file in portfolio.glob("*.parquet"):
        if file.stem not in ("contacts", "promises"):
            (bad / file.name).write_bytes(file.read_bytes())
    accounts = pd.read_parquet(portfolio / "accounts.parquet")
    accounts.drop(columns=["charged_off_at", "creditor"]).to_parquet(bad / "accounts.parquet")
    payments = pd.read_parquet(portfolio / "payments.parquet")
    payments.drop(columns=["method"]).to_parquet(bad / "payments.parquet")
    done = run("validate", str(bad))
    assert done.returncode == 2
    assert done.stderr.splitlines() == [
        f"error: {bad}/manifest.json: file not found (every portfolio needs manifest.json: its "
        "source, the moment the data ends as data_end, and its row counts)",
        f"error: {bad}/accounts.parquet: missing column(s) charged_off_at, creditor",
        f"error: {bad}/payments.parquet: missing column(s) method",
        f"error: {bad}/promises.parquet: file not found (every portfolio needs promises.parquet)",
        f"error: {bad}/contacts.parquet: file not found (every portfolio needs contacts.parquet)",
    ]
    assert not (bad / "quarantine").exists()


def test_simulate_refuses_to_overwrite_without_asking(portfolio: Path) -> None:
    done = run("simulate", "--accounts", "10", "--out", str(portfolio))
    assert done.returncode == 2 and "--overwrite" in done.stderr
    assert "Traceback" not in done.stderr


def test_import_taiwan_then_validate(taiwan_csv: Path, tmp_path: Path) -> None:
    out = tmp_path / "taiwan"
    done = run("import", "taiwan", str(taiwan_csv), "--out", str(out))
    assert done.returncode == 0, done.stderr
    assert (out / "labels" / "default_next_month.parquet").is_file()
    assert run("validate", str(out)).returncode == 0
    built = run("features", "build", str(out))
    assert built.returncode == 0, built.stderr
    assert "1 snapshots" in built.stdout and "30,000 account rows" in built.stdout
    missing = run("import", "taiwan", str(tmp_path / "absent.csv"), "--out", str(tmp_path / "x"))
    assert missing.returncode == 2 and "file not found" in missing.stderr


def test_features_build_and_materialize(portfolio: Path) -> None:
    done = run("features", "build", str(portfolio), "--every", "30d")
    assert done.returncode == 0, done.stderr
    assert "snapshots from" in done.stdout
    assert (portfolio / "feature_store" / "registry.db").is_file()
    done = run("features", "materialize", str(portfolio))
    assert done.returncode == 0, done.stderr
    assert "online store holds the snapshot as of" in done.stdout
    assert "Materializing" not in done.stdout  # Feast's own chatter is kept out
    outside = run("features", "build", str(portfolio), "--start", "2031-01-01")
    assert outside.returncode == 2 and "outside the data" in outside.stderr
    garbage = run("features", "build", str(portfolio), "--start", "someday")
    assert garbage.returncode == 2 and "is not a date" in garbage.stderr
    for every, message in (("0d", "must be a positive duration"), ("soon", "is not a duration")):
        done = run("features", "build", str(portfolio), "--every", every)
        assert done.returncode == 2 and message in done.stderr, done.stderr
        assert done.stderr.startswith("error:")
    assert "Traceback" not in outside.stderr + garbage.stderr


def test_a_missing_registry_is_named_and_not_created(portfolio: Path, tmp_path: Path) -> None:
    """Run from a folder without the embedded store: one line saying which store was looked
    for, and no empty store left behind."""
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith("COBRANZA_")}
    for args in (
        ["evaluate", "--data", str(portfolio)],
        ["audit", "--data", str(portfolio), "--out", str(tmp_path / "reports")],
    ):
        done = subprocess.run(
            [COBRANZA, *args], capture_output=True, text=True, timeout=300, cwd=elsewhere, env=env
        )
        assert done.returncode == 2, done.stdout + done.stderr
        assert f"no MLflow store at {elsewhere / 'data' / 'mlflow' / 'mlflow.db'}" in done.stderr
        assert len(done.stderr.strip().splitlines()) == 1
    assert not (elsewhere / "data").exists()
    # the service says the same on /ready, and the worklist command passes it on
    done = subprocess.run(
        [COBRANZA, "worklist", "--portfolio", str(portfolio)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=elsewhere,
        env=env,
    )
    assert done.returncode == 2
    assert "cobranza-propensity@champion: no MLflow store at" in done.stderr, done.stderr
    assert not (elsewhere / "data").exists()


@pytest.mark.parametrize(
    ("damage", "problem"),
    [
        ("missing", "file not found"),
        ("not_json", "not valid JSON (Expecting value at line 1, column 14)"),
        ("a_list", "must be a JSON object"),
        ("no_data_end", "no data_end"),
        ("bad_date", "data_end is not a date"),
    ],
)
def test_a_missing_or_unreadable_manifest_is_unusable_input(
    portfolio: Path, tmp_path: Path, damage: str, problem: str
) -> None:
    bad = copy_of(portfolio, tmp_path / "bad")
    payments = pd.read_parquet(bad / "payments.parquet")
    payments.loc[0, "paid_at"] = pd.Timestamp("2031-01-01", tz="UTC")  # only the end stops it
    payments.to_parquet(bad / "payments.parquet")
    manifest = bad / "manifest.json"
    content = json.loads(manifest.read_text())
    if damage == "missing":
        manifest.unlink()
    elif damage == "not_json":
        manifest.write_text('{"data_end": }')
    elif damage == "a_list":
        manifest.write_text(json.dumps([content]))
    elif damage == "no_data_end":
        manifest.write_text(json.dumps({k: v for k, v in content.items() if k != "data_end"}))
    else:
        manifest.write_text(json.dumps({**content, "data_end": "the end of 2025"}))
    for args in (["validate", str(bad)], ["features", "build", str(bad), "--every", "30d"]):
        done = run(*args)
        assert done.returncode == 2, (args, done.stdout, done.stderr)
        lines = done.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), done.stderr
        assert f"{manifest}: {problem}" in lines[0]
        assert "unexpected" not in lines[0]
    assert not (bad / "features").exists()
