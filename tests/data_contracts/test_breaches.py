"""Breaches of the contact rules in the history: warned about, never quarantined."""

from __future__ import annotations

import pandas as pd

from data_contracts.contact_rules import load_rules
from data_contracts.validation import validate_tables
from tests.conftest import tiny_tables, utc

RULES = load_rules()  # the packaged rules: 8:00-21:00, 7 calls in 7 days; MA 2 calls, WA 20:00


def _with_contacts(rows: list[tuple[int, str, str, str]], **debtor: str) -> dict[str, pd.DataFrame]:
    """The tiny portfolio with its first debtor moved (time zone, region) and these contacts:
    (account_id, channel, direction, attempted_at UTC)."""
    tables = tiny_tables()
    debtors = tables["debtors"]
    for column, value in debtor.items():
        values = debtors[column].astype(object)
        values.iloc[0] = value
        debtors[column] = pd.Categorical(values)
    tables["contacts"] = pd.DataFrame(
        {
            "contact_id": list(range(1, len(rows) + 1)),
            "account_id": [account for account, *_ in rows],
            "channel": pd.Categorical([channel for _, channel, _, _ in rows]),
            "direction": pd.Categorical([direction for _, _, direction, _ in rows]),
            "attempted_at": pd.Series([utc(at) for *_, at in rows], dtype="datetime64[us, UTC]"),
            "outcome": pd.Categorical(
                ["no_answer" if c == "call" else "delivered" for _, c, _, _ in rows]
            ),
            "offer_id": pd.array([pd.NA] * len(rows), dtype="Int64"),
            "action_probability": [0.5 if d == "outbound" else float("nan") for *_, d, _ in rows],
        }
    )
    return tables


def _warnings(tables: dict[str, pd.DataFrame]) -> dict[str, object]:
    result = validate_tables(tables, contact_rules=RULES)
    assert result.quarantined_rows == 0 and result.reconciles
    assert len(result.valid["contacts"]) == len(tables["contacts"])  # nothing quarantined
    return {notice.rule: notice for notice in result.reports["contacts"].warnings}


def test_the_same_utc_evening_is_a_breach_in_summer_time_only() -> None:
    # 01:30 UTC is 21:30 in New York under daylight saving time (UTC-4), 20:30 after it (UTC-5):
    # US daylight saving time ended on 2024-11-03 and began on 2025-03-09
    tables = _with_contacts(
        [
            (10, "call", "outbound", "2024-11-02 01:30"),  # Nov 1, 21:30 EDT: breach
            (10, "call", "outbound", "2024-11-04 01:30"),  # Nov 3, 20:30 EST: allowed
            (10, "sms", "outbound", "2025-03-09 01:30"),  # Mar 8, 20:30 EST: allowed
            (10, "email", "outbound", "2025-03-10 01:30"),  # Mar 9, 21:30 EDT: breach
            (10, "call", "outbound", "2025-03-10 12:00"),  # 08:00 EDT exactly: allowed
            (10, "call", "outbound", "2025-03-10 11:59"),  # 07:59 EDT: breach
            (10, "call", "inbound", "2025-03-11 03:00"),  # the debtor called: not ours to limit
            (10, "letter", "outbound", "2025-03-11 03:00"),  # mailed at night, read by day
        ],
        timezone="America/New_York",
        region="NY",
    )
    warnings = _warnings(tables)
    notice = warnings["outside_contact_hours"]
    assert notice.rows == 3
    assert notice.first_rows == (
        {"row": 0, "local_time": "2024-11-01T21:30:00-04:00", "jurisdiction": "default"},
        {"row": 3, "local_time": "2025-03-09T21:30:00-04:00", "jurisdiction": "default"},
        {"row": 5, "local_time": "2025-03-10T07:59:00-04:00", "jurisdiction": "default"},
    )
    assert "call_limit_exceeded" not in warnings


def test_a_jurisdiction_with_earlier_hours_uses_its_own_limit() -> None:
    rows = [(10, "call", "outbound", "2024-07-10 03:30")]  # 20:30 in Seattle (UTC-7)
    washington = _warnings(_with_contacts(rows, timezone="America/Los_Angeles", region="WA"))
    assert washington["outside_contact_hours"].first_rows == (
        {"row": 0, "local_time": "2024-07-09T20:30:00-07:00", "jurisdiction": "WA"},
    )
    assert _warnings(_with_contacts(rows, timezone="America/Los_Angeles", region="OR")) == {}


def test_calls_over_the_limit_in_seven_local_days_are_counted_per_debtor() -> None:
    # Massachusetts: at most 2 call attempts in 7 consecutive days; accounts 10 and 11 are
    # the same debtor's, so their calls add up
    rows = [
        (10, "call", "outbound", "2024-07-01 14:00"),
        (11, "call", "outbound", "2024-07-03 14:00"),
        (10, "sms", "outbound", "2024-07-04 14:00"),  # not a call
        (10, "call", "inbound", "2024-07-04 15:00"),  # the debtor called us
        (11, "call", "outbound", "2024-07-07 14:00"),  # third call in Jul 1-7: breach
        (10, "call", "outbound", "2024-07-09 14:00"),  # Jul 3-9 holds Jul 3, 7, 9: breach
        (10, "call", "outbound", "2024-07-15 14:00"),  # Jul 9-15: Jul 9, 15: allowed
    ]
    warnings = _warnings(_with_contacts(rows, timezone="America/New_York", region="MA"))
    notice = warnings["call_limit_exceeded"]
    assert notice.rows == 2
    assert [(r["row"], r["calls_in_7_days"], r["jurisdiction"]) for r in notice.first_rows] == [
        (4, 3, "MA"),
        (5, 3, "MA"),
    ]
    # the default limit (7) is not reached by the same calls elsewhere
    assert _warnings(_with_contacts(rows, timezone="America/New_York", region="NY")) == {}


def test_the_seven_days_are_local_calendar_days() -> None:
    # 03:00 UTC on Jul 8 is still Jul 7 in Boston (UTC-4): inside Jul 1-7 with the others
    rows = [
        (10, "call", "outbound", "2024-07-01 14:00"),
        (10, "call", "outbound", "2024-07-04 14:00"),
        (10, "call", "outbound", "2024-07-08 00:30"),  # Jul 7, 20:30 local
    ]
    boston = _warnings(_with_contacts(rows, timezone="America/New_York", region="MA"))
    assert [r["row"] for r in boston["call_limit_exceeded"].first_rows] == [2]
    # in Madrid the third call is on Jul 8 local: the window Jul 2-8 holds two calls
    madrid = _warnings(_with_contacts(rows, timezone="Europe/Madrid", region="MA"))
    assert "call_limit_exceeded" not in madrid


def test_without_rules_there_are_no_warnings() -> None:
    rows = [(10, "call", "outbound", "2024-11-02 01:30")]
    result = validate_tables(_with_contacts(rows, timezone="America/New_York", region="NY"))
    assert result.reports["contacts"].warnings == ()
    assert result.summary()["compliance_warnings"] == 0
