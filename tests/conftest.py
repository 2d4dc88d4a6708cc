"""Small seeded fixtures shared by the test suite."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from simulator import SimulatedPortfolio, SimulationConfig, simulate_portfolio

DATASETS = Path(__file__).resolve().parents[1] / "datasets"
TAIWAN_CSV = DATASETS / "taiwan" / "default_of_credit_card_clients.csv.gz"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """In a pytest-xdist worker (`make test`: `-n 2 --dist loadfile`, a module per worker at a
    time, handed out in this order), modules holding slow tests come first, so that no long one
    starts when the other worker is nearly done. A serial run keeps the files' order."""
    if not hasattr(config, "workerinput"):
        return
    slow = {item.path for item in items if item.get_closest_marker("slow")}
    items.sort(key=lambda item: item.path not in slow)  # stable: keeps the order in a module


def utc(text: str) -> pd.Timestamp:
    return pd.Timestamp(text, tz="UTC").as_unit("us")


def tiny_tables() -> dict[str, pd.DataFrame]:
    """A hand-made portfolio: 2 debtors, 3 accounts, a few events, all valid."""

    def ts(values: list[str | None]) -> pd.Series:
        return pd.Series([utc(v) if v else pd.NaT for v in values], dtype="datetime64[us, UTC]")

    debtors = pd.DataFrame(
        {
            "debtor_id": [1, 2],
            "timezone": pd.Categorical(["America/Chicago", "Europe/Madrid"]),
            "region": pd.Categorical(["TX", "MD"]),
            "age_band": pd.Categorical(["25-34", None]),
            "gender": pd.Categorical(["female", None]),
        }
    )
    accounts = pd.DataFrame(
        {
            "account_id": [10, 11, 12],
            "debtor_id": [1, 1, 2],
            "product": pd.Categorical(["credit_card", "telecom", "personal_loan"]),
            "currency": pd.Categorical(["USD", "USD", "EUR"]),
            "original_balance": [1200.0, 300.0, 5000.0],
            "current_balance": [1000.0, 300.0, 0.0],
            "opened_at": ts(["2022-01-10", "2023-03-01", "2021-06-01"]),
            "delinquent_since": ts(["2024-01-01", "2024-05-01", "2024-02-01"]),
            "charged_off_at": ts(["2024-06-29", None, None]),
            "placed_at": ts(["2024-07-01", "2024-07-01", "2024-05-01"]),
            "days_past_due_at_placement": [182, 61, 90],
            "creditor": pd.Categorical(["bank-a", "telco-b", "bank-a"]),
        }
    )
    offers = pd.DataFrame(
        {
            "offer_id": [100, 101],
            "account_id": [10, 12],
            "kind": pd.Categorical(["discount", "payment_plan"]),
            "discount_pct": [20.0, float("nan")],
            "installments": pd.array([pd.NA, 6], dtype="Int64"),
            "offered_at": ts(["2024-07-05 15:00", "2024-05-10 16:00"]),
            "expires_at": ts(["2024-07-19 15:00", "2024-06-09 16:00"]),
            "accepted_at": ts([None, "2024-05-10 16:05"]),
        }
    )
    payments = pd.DataFrame(
        {
            "payment_id": [1000, 1001, 1002],
            "account_id": [10, 12, 12],
            "paid_at": ts(["2024-07-20 10:00", "2024-05-20 11:00", "2024-06-20 11:00"]),
            "amount": [200.0, 833.33, 833.33],
            "method": pd.Categorical(["card", "bank_transfer", "direct_debit"]),
        }
    )
    promises = pd.DataFrame(
        {
            "promise_id": [500, 501],
            "account_id": [10, 12],
            "made_at": ts(["2024-07-05 15:10", "2024-05-10 16:05"]),
            "due_at": ts(["2024-07-20 05:00", "2024-05-20 04:00"]),
            "amount": [200.0, 833.33],
            "kept": pd.array([True, True], dtype="boolean"),
            "offer_id": pd.array([pd.NA, 101], dtype="Int64"),
        }
    )
    contacts = pd.DataFrame(
        {
            "contact_id": [1, 2, 3, 4],
            "account_id": [10, 10, 11, 12],
            "channel": pd.Categorical(["call", "call", "sms", "letter"]),
            "direction": pd.Categorical(["outbound", "outbound", "outbound", "inbound"]),
            "attempted_at": ts(
                ["2024-07-03 14:00", "2024-07-05 15:00", "2024-07-06 18:00", "2024-05-10 16:00"]
            ),
            "outcome": pd.Categorical(["no_answer", "promise_to_pay", "delivered", "dispute"]),
            "offer_id": pd.array([pd.NA, 100, pd.NA, pd.NA], dtype="Int64"),
            "action_probability": [0.2, 0.05, 0.1, float("nan")],
        }
    )
    statements = pd.DataFrame(
        {
            "statement_id": [7],
            "account_id": [10],
            "statement_at": ts(["2024-06-30"]),
            "balance": [1200.0],
            "credit_limit": [2000.0],
            "status": pd.Categorical(["delinquent"]),
            "days_past_due": [181],
        }
    )
    # account 12 settles with its second payment; account 11 is recalled, then reopened
    account_events = pd.DataFrame(
        {
            "event_id": [1, 2, 3],
            "account_id": [12, 11, 11],
            "occurred_at": ts(["2024-06-20 11:00", "2024-07-10 09:00", "2024-07-15 09:00"]),
            "kind": pd.Categorical(["settled", "recalled", "reopened"]),
            "amount_forgiven": [3333.34, float("nan"), float("nan")],
        }
    )
    return {
        "debtors": debtors,
        "accounts": accounts,
        "offers": offers,
        "payments": payments,
        "promises": promises,
        "contacts": contacts,
        "statements": statements,
        "account_events": account_events,
    }


@pytest.fixture
def tables() -> dict[str, pd.DataFrame]:
    return tiny_tables()


@pytest.fixture(scope="session")
def small_portfolio() -> SimulatedPortfolio:
    """About 400 simulated accounts with a year of history (seeded)."""
    return simulate_portfolio(SimulationConfig(accounts=400, seed=11))


@pytest.fixture(scope="session")
def medium_portfolio() -> SimulatedPortfolio:
    """6,000 simulated accounts: enough events to measure behaviour rates."""
    return simulate_portfolio(SimulationConfig(accounts=6000, seed=5))


@pytest.fixture(scope="session")
def taiwan_csv() -> Path:
    if not TAIWAN_CSV.is_file():
        pytest.fail(f"the dataset shipped with the repository is missing: {TAIWAN_CSV}")
    return TAIWAN_CSV


@pytest.fixture(scope="session")
def featured_portfolio(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """1,200 simulated accounts over a year, with weekly feature snapshots in a Feast store."""
    from pipelines.features_build import build_snapshots
    from pipelines.simulate import simulate_to_folder

    folder = tmp_path_factory.mktemp("featured") / "portfolio"
    simulate_to_folder(SimulationConfig(accounts=1200, seed=3), folder)
    build_snapshots(folder, None, None, "7d")
    return folder
