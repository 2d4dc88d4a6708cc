"""A portfolio whose ids are an agency's own text (leading zeros, letters) goes through
validation, features, training, promotion, the audit, scores and the worklist, and every id
comes back exactly as it went in."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
import yaml
from pydantic import SecretStr

from data_contracts.settings import ServingSettings
from simulator.engine import SimulationConfig
from tests.serving.conftest import KEY, QUICK, REPO, Api, Running, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]

COBRANZA = str(Path(sys.executable).with_name("cobranza"))
ID_TEXT = {  # id column -> how the agency writes it
    "debtor_id": lambda n: f"DEB-{int(n):07d}",
    "account_id": lambda n: f"00{n}",  # leading zeros: an integer reading would lose them
    "offer_id": lambda n: f"of/{n}",
}


def _relabel(folder: Path) -> dict[str, str]:
    """Rewrite every table's ids as text; the account id of each simulated account number. The
    simulator's hidden truth goes: an agency's portfolio has none (and the truth's oracle
    numbers accounts as the simulator does)."""
    shutil.rmtree(folder / "truth")
    for path in folder.glob("*.parquet"):
        frame = pd.read_parquet(path)
        for column, text in ID_TEXT.items():
            if column in frame.columns:
                frame[column] = frame[column].astype(object).map(text, na_action="ignore")
        frame.to_parquet(path)
    accounts = pd.read_parquet(folder / "accounts.parquet", columns=["account_id"])
    return {str(int(a)): a for a in accounts["account_id"]}


def run(data_root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "COBRANZA_TRAINING__DATA_ROOT": str(data_root)}
    env.pop("COBRANZA_TRAINING__TRACKING_URI", None)
    return subprocess.run([COBRANZA, *args], capture_output=True, text=True, timeout=900, env=env)


@pytest.fixture(scope="module")
def text_portfolio(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    from pipelines.simulate import simulate_to_folder
    from serving.app import create_app

    root = tmp_path_factory.mktemp("text_ids")
    folder = root / "portfolio"
    simulate_to_folder(SimulationConfig(accounts=800, seed=21), folder)
    _relabel(folder)
    experiment = root / "quick.yaml"
    experiment.write_text(yaml.safe_dump({**QUICK, "tuning": {"trials": 1}}))
    data = root / "data"
    steps = [
        ("validate", str(folder)),
        ("features", "build", str(folder), "--every", "7d"),
        ("features", "materialize", str(folder)),
        ("train", "--data", str(folder), "--experiment", str(experiment)),
        ("audit", "--data", str(folder), "--experiment", str(experiment), "--out", str(root)),
    ]
    for step in steps:
        done = run(data, *step)
        assert done.returncode == 0, (step, done.stdout[-2000:], done.stderr[-2000:])
    settings = ServingSettings(
        portfolio=str(folder),
        api_keys=[SecretStr(KEY)],
        contact_rules=str(REPO / "data_contracts" / "contact_rules.yaml"),
    )
    uri = f"sqlite:///{data / 'mlflow' / 'mlflow.db'}"
    url, server, thread = serve(create_app(settings, tracking_uri=uri))
    yield Running(url, folder, server, uri)
    server.should_exit = True  # type: ignore[attr-defined]
    thread.join(timeout=10)


def test_text_ids_round_trip_through_features_training_and_the_service(
    text_portfolio: Running,
) -> None:
    folder = text_portfolio.portfolio
    accounts = pd.read_parquet(folder / "accounts.parquet")
    wanted = set(accounts["account_id"].astype(str))
    assert all(a.startswith("00") for a in wanted)  # the agency's ids, as written
    snapshot = sorted((folder / "features" / "account").glob("as_of=*.parquet"))[-1]
    stored = pd.read_parquet(snapshot, columns=["account_id"])["account_id"]
    assert set(stored) <= wanted and len(stored) > 0  # features keyed by the same text
    debtors = pd.read_parquet(sorted((folder / "features" / "debtor").glob("*.parquet"))[-1])
    assert debtors["debtor_id"].str.fullmatch(r"DEB-\d{7}").all()

    api = Api(text_portfolio.url)
    ids = list(stored.head(20))
    scored = api.post("/v1/scores", json={"account_ids": [*ids, ids[0].lstrip("0")]})
    assert scored.status_code == 200, scored.text
    items = scored.json()["items"]
    assert [item["account_id"] for item in items] == [*ids, ids[0].lstrip("0")]
    assert items[-1]["status"] == "unknown_account"  # "07" is not "007"
    assert {item["status"] for item in items[:-1]} <= {"scored", "closed"}
    assert api.post("/v1/scores", json={"account_ids": [int(ids[0])]}).status_code == 422

    day = pd.Timestamp(json.loads((folder / "manifest.json").read_text())["data_end"])
    worklist = api.post(
        "/v1/worklists",
        json={"date": day.date().isoformat(), "capacity": {"call": 50, "sms": 50, "email": 50}},
    )
    assert worklist.status_code == 200, worklist.text
    body = worklist.json()
    listed = [item["account_id"] for item in body["items"]] + [
        item["account_id"] for item in body["excluded"]
    ]
    assert listed and set(listed) <= wanted


def test_promotion_and_audit_name_the_text_ids_models(text_portfolio: Running) -> None:
    reports = list(text_portfolio.portfolio.parent.glob("**/*.json"))
    assert reports  # the audit wrote its summary
    done = run(
        text_portfolio.portfolio.parent / "data",
        "promote",
        "--data",
        str(text_portfolio.portfolio),
        "--which",
        "propensity",
    )
    assert done.returncode == 0, done.stderr
