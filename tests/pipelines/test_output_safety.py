"""Commands never delete what they did not write, and never leave half-written output."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pandas as pd
import pytest

from data_contracts.schemas import CONTRACTS
from pipelines.portfolio import OutputFolderError, staged_output, validate_portfolio
from pipelines.simulate import simulate_to_folder
from simulator import SimulationConfig

COBRANZA = str(Path(sys.executable).with_name("cobranza"))
SMALL = SimulationConfig(accounts=20, seed=1, horizon_days=40, placement_days=20)


def run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([COBRANZA, *args], capture_output=True, text=True, timeout=300)


@pytest.mark.parametrize("accounts", [1, 2, 10])
@pytest.mark.parametrize("days", [30, 45])
def test_tiny_and_short_simulations_write_complete_valid_portfolios(
    tmp_path: Path, accounts: int, days: int
) -> None:
    folder = tmp_path / "p"
    config = SimulationConfig(
        accounts=accounts, seed=2, horizon_days=days, placement_days=days // 2
    )
    manifest = simulate_to_folder(config, folder)
    assert manifest["rows"]["accounts"] == accounts
    result = validate_portfolio(folder)
    assert result.quarantined_rows == 0


def test_overwrite_refuses_a_folder_that_is_not_a_portfolio(tmp_path: Path) -> None:
    precious = tmp_path / "project"
    precious.mkdir()
    (precious / "notes.txt").write_text("keep me")
    done = run("simulate", "--accounts", "5", "--out", str(precious), "--overwrite")
    assert done.returncode == 2 and "no cobranza portfolio" in done.stderr
    assert (precious / "notes.txt").read_text() == "keep me"


def test_overwrite_replaces_a_portfolio_only_once_the_new_one_is_complete(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    before = json.loads((folder / "manifest.json").read_text())
    with pytest.raises(RuntimeError), staged_output(folder, overwrite=True) as staging:
        (staging / "accounts.parquet").write_text("half")
        raise RuntimeError("crash in the middle")
    assert json.loads((folder / "manifest.json").read_text()) == before
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".p.")]
    simulate_to_folder(
        SimulationConfig(accounts=30, seed=1, horizon_days=40, placement_days=20),
        folder,
        overwrite=True,
    )
    assert json.loads((folder / "manifest.json").read_text())["accounts"] == 30


def test_output_that_is_a_file_or_holds_the_input_is_refused(
    tmp_path: Path, taiwan_csv: Path
) -> None:
    a_file = tmp_path / "file"
    a_file.write_text("x")
    with pytest.raises(OutputFolderError, match="is a file"):
        simulate_to_folder(SMALL, a_file)
    inside = tmp_path / "tw"
    inside.mkdir()
    copy = inside / "data.csv"
    copy.write_bytes(taiwan_csv.read_bytes())
    done = run("import", "taiwan", str(copy), "--out", str(inside), "--overwrite")
    assert done.returncode == 2 and "contains the input" in done.stderr
    assert copy.is_file()


def test_quarantine_never_deletes_input(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    files = sorted(p.name for p in folder.rglob("*.parquet"))
    for target in (folder, folder / "truth", tmp_path):
        done = run("validate", str(folder), "--quarantine", str(target))
        assert done.returncode == 2, target
        assert "--quarantine" in done.stderr
    assert sorted(p.name for p in folder.rglob("*.parquet")) == files
    a_file = tmp_path / "q.txt"
    a_file.write_text("x")
    done = run("validate", str(folder), "--quarantine", str(a_file))
    assert done.returncode == 2 and "is a file" in done.stderr


def test_a_stale_report_does_not_survive_an_unusable_run(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    payments = pd.read_parquet(folder / "payments.parquet")
    if len(payments):
        payments.loc[0, "amount"] = -1.0
        payments.to_parquet(folder / "payments.parquet")
    assert run("validate", str(folder)).returncode in (0, 1)
    assert (folder / "quarantine" / "report.json").is_file()
    (folder / "contacts.parquet").unlink()
    assert run("validate", str(folder)).returncode == 2
    assert not (folder / "quarantine" / "report.json").exists()


def test_odd_storage_types_are_read_or_refused_cleanly(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    debtors = pd.read_parquet(folder / "debtors.parquet")
    debtors["debtor_id"] = debtors["debtor_id"].astype("uint64")
    debtors.loc[0, "debtor_id"] = 2**64 - 1
    debtors["region"] = [
        b"caf\xe9" if i == 1 else str(r).encode() for i, r in enumerate(debtors["region"])
    ]
    debtors.to_parquet(folder / "debtors.parquet")
    done = run("validate", str(folder))
    assert done.returncode == 1, done.stderr
    report = json.loads((folder / "quarantine" / "report.json").read_text())
    rules = report["tables"]["debtors"]["rows_per_rule"]
    assert rules == {"region:type": 1}  # an id above int64 is read as its decimal text
    accounts = report["tables"]["accounts"]["rows_per_rule"]
    assert set(accounts) <= {"unknown_debtor", "debtor_quarantined"}
    assert "Traceback" not in done.stderr


def test_events_after_the_end_of_the_data_are_quarantined(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    simulate_to_folder(
        SimulationConfig(accounts=40, seed=3, horizon_days=60, placement_days=30), folder
    )
    contacts = pd.read_parquet(folder / "contacts.parquet")
    contacts.loc[0, "attempted_at"] = pd.Timestamp("2999-01-01", tz="UTC")
    contacts.to_parquet(folder / "contacts.parquet")
    result = validate_portfolio(folder)
    assert result.reports["contacts"].rows_per_rule == {"after_data_end": 1}


def test_many_quarantined_rows_are_reported_in_full(tmp_path: Path) -> None:
    """Every child row orphaned at once (ids shifted): all quarantined, counts reconcile."""
    folder = tmp_path / "p"
    simulate_to_folder(
        SimulationConfig(accounts=300, seed=4, horizon_days=90, placement_days=60), folder
    )
    accounts = pd.read_parquet(folder / "accounts.parquet")
    accounts["account_id"] = "moved-" + accounts["account_id"].astype(str)
    accounts.to_parquet(folder / "accounts.parquet")
    result = validate_portfolio(folder)
    contacts = result.reports["contacts"]
    assert contacts.valid_rows == 0
    assert contacts.rows_per_rule["unknown_account"] == contacts.input_rows
    assert result.reconciles
    quarantined = pd.read_parquet(folder / "quarantine" / "contacts.parquet")
    assert len(quarantined) == contacts.input_rows
    reasons = quarantined["quarantine_reasons"].astype(str)
    assert reasons.str.startswith("account_id: no such account").all()
    both = quarantined["quarantine_rules"].astype(str) == "unknown_account; offer_quarantined"
    assert both.sum() == contacts.rows_per_rule["offer_quarantined"]


def _leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.parent.iterdir() if p.name.startswith(f".{folder.name}."))


def _whole_portfolio(folder: Path) -> bool:
    tables = ("debtors", "accounts", "offers", "payments", "promises", "contacts")
    return (folder / "manifest.json").is_file() and all(
        (folder / f"{table}.parquet").is_file() for table in tables
    )


@pytest.mark.parametrize("command", ["simulate", "import"])
def test_a_run_killed_while_swapping_its_output_in_leaves_a_whole_portfolio(
    tmp_path: Path, taiwan_csv: Path, command: str
) -> None:
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    args = {
        "simulate": ["simulate", "--accounts", "30", "--seed", "2", "--days", "40"],
        "import": ["import", "taiwan", str(taiwan_csv)],
    }[command] + ["--out", str(folder), "--overwrite"]
    killed = subprocess.run(
        [COBRANZA, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COBRANZA_TEST_CRASH_AT": "mid_swap"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert _whole_portfolio(folder)  # the old one or the new one, never none
    done = run(*args)
    assert done.returncode == 0, done.stderr
    assert _whole_portfolio(folder) and _leftovers(folder) == []


def test_the_staging_folder_of_a_killed_run_is_removed_by_the_next(tmp_path: Path) -> None:
    folder = tmp_path / "p"
    process = subprocess.Popen(
        [COBRANZA, "simulate", "--accounts", "2000", "--seed", "1", "--out", str(folder)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.monotonic() + 120
    while process.poll() is None and not _leftovers(folder) and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    assert _leftovers(folder), "the run ended before its staging folder was seen"
    done = run("simulate", "--accounts", "5", "--seed", "1", "--days", "40", "--out", str(folder))
    assert done.returncode == 0, done.stderr
    assert _leftovers(folder) == [] and "removed" in done.stderr
    assert json.loads((folder / "manifest.json").read_text())["accounts"] == 5


def test_a_portfolio_moved_aside_by_an_interrupted_swap_is_restored(tmp_path: Path) -> None:
    """What a crash between the two renames of a swap leaves where the filesystem cannot
    exchange two folders in one step: the old portfolio in `.p.old-*/p`, no `p`."""
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    before = (folder / "manifest.json").read_text()
    aside = tmp_path / ".p.old-x1y2"
    aside.mkdir()
    folder.rename(aside / "p")
    done = run("simulate", "--accounts", "5", "--days", "40", "--out", str(folder))
    assert done.returncode == 2 and "--overwrite" in done.stderr  # it is back, so not replaced
    assert "restored" in done.stderr
    assert (folder / "manifest.json").read_text() == before
    assert _leftovers(folder) == []


def _with_a_bad_debtor(folder: Path) -> Path:
    simulate_to_folder(SMALL, folder)
    debtors = pd.read_parquet(folder / "debtors.parquet")
    debtors["region"] = debtors["region"].astype(object)
    debtors.loc[0, "region"] = None
    debtors.to_parquet(folder / "debtors.parquet")
    return folder


def test_a_stopped_validation_does_not_block_the_next(tmp_path: Path) -> None:
    folder = _with_a_bad_debtor(tmp_path / "p")
    killed = subprocess.run(
        [COBRANZA, "validate", str(folder)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COBRANZA_TEST_CRASH_AT": "quarantine_table_written"},
    )
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    done = run("validate", str(folder))
    assert done.returncode == 1, done.stderr
    report = json.loads((folder / "quarantine" / "report.json").read_text())
    assert report["tables"]["debtors"]["rows_per_rule"] == {"region:missing_value": 1}
    assert not [p.name for p in folder.iterdir() if p.name.startswith(".quarantine.")]


def test_a_quarantine_is_recognised_by_its_files_and_a_folder_of_other_files_refused(
    tmp_path: Path,
) -> None:
    folder = _with_a_bad_debtor(tmp_path / "p")
    quarantine = tmp_path / "q"
    assert run("validate", str(folder), "--quarantine", str(quarantine)).returncode == 1
    (quarantine / "report.json").unlink()  # as an interrupted earlier version left it
    again = run("validate", str(folder), "--quarantine", str(quarantine))
    assert again.returncode == 1, again.stderr
    assert (quarantine / "report.json").is_file()
    other = tmp_path / "other"
    other.mkdir()
    (other / "debtors.parquet").write_bytes((folder / "debtors.parquet").read_bytes())
    refused = run("validate", str(folder), "--quarantine", str(other))
    assert refused.returncode == 2 and "--quarantine" in refused.stderr
    assert (other / "debtors.parquet").read_bytes() == (folder / "debtors.parquet").read_bytes()


def test_tables_are_read_without_handing_arrow_a_python_file(tmp_path: Path) -> None:
    """pandas opens a local path itself and hands Arrow the Python file object; Arrow's I/O
    threads then need the GIL to let go of it, and one still doing so when the interpreter
    shuts down is killed inside a C++ destructor: `terminate called without an active
    exception`, exit 134, seen after `validate` printed a missing column. Tables are read
    through Arrow's own filesystem instead, so Python never opens a parquet file."""
    folder = tmp_path / "p"
    simulate_to_folder(SMALL, folder)
    code = (
        "import sys\n"
        "opened = []\n"
        "def hook(event, args):\n"
        "    if event == 'open' and str(args[0]).endswith('.parquet'):\n"
        "        opened.append(str(args[0]))\n"
        "sys.addaudithook(hook)\n"
        "from pipelines.portfolio import PortfolioFolder\n"
        f"tables = dict(PortfolioFolder({str(folder)!r}))\n"
        "print(len(tables), opened)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    # every contract table (an optional one missing is an empty table), none opened by Python
    assert done.stdout.split(maxsplit=1) == [str(len(CONTRACTS)), "[]\n"]
