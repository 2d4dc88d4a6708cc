"""The worklist's rules on hand-made accounts: 7-in-7, Regulation F's conversation gap, quiet
hours across time zones, opt-outs, disputes, jurisdictions, capacity and follow-ups."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.contact_rules import DEFAULT_RULES_FILE, ContactRules, load_rules
from features.compliance import AccountHistory, call_block
from serving.worklist import build_worklist, closed_exclusions

DAY = date(2026, 11, 24)
RULES = load_rules(DEFAULT_RULES_FILE)
NO_FOLLOW_UPS = pd.DataFrame(columns=["account_id", "kind", "detail"])


def candidates(rows: list[tuple[int, str, str, float]]) -> pd.DataFrame:
    return pd.DataFrame(
        [
            {
                "account_id": a,
                "channel": c,
                "hour_band": b,
                "offer": "none",
                "discount_pct": np.nan,
                "installments": np.nan,
                "expected_net": v,
            }
            for a, c, b, v in rows
        ]
    )


def accounts(*rows: tuple[int, str, str]) -> pd.DataFrame:
    return pd.DataFrame(rows, columns=["account_id", "region", "timezone"])


def days_ago(*offsets: int) -> list[date]:
    return [DAY - timedelta(days=k) for k in offsets]


def test_seven_calls_in_seven_days_including_today() -> None:
    limits = RULES.for_region("TX")
    six = AccountHistory(call_days=days_ago(1, 2, 3, 4, 5, 6))
    assert call_block(six, DAY, limits) is None  # the 7th call is allowed
    seven = AccountHistory(call_days=days_ago(1, 1, 2, 3, 4, 5, 6))
    # the oldest attempt (6 days ago) leaves the window tomorrow
    assert call_block(seven, DAY, limits) == f"call cap reached until {DAY + timedelta(days=1)}"
    old = AccountHistory(call_days=days_ago(7, 8, 9, 10, 11, 12, 13, 14))
    assert call_block(old, DAY, limits) is None  # a week ago does not count


def test_no_call_within_seven_days_after_a_conversation() -> None:
    limits = RULES.for_region("TX")
    talked = AccountHistory(last_conversation=DAY - timedelta(days=7))
    assert "no call until 2026-11-25" in str(call_block(talked, DAY, limits))
    assert (
        call_block(AccountHistory(last_conversation=DAY - timedelta(days=8)), DAY, limits) is None
    )


def test_jurisdictions_are_stricter_and_never_looser() -> None:
    two = AccountHistory(call_days=days_ago(1, 3))
    assert call_block(two, DAY, RULES.for_region("TX")) is None
    assert "call cap reached" in str(call_block(two, DAY, RULES.for_region("MA")))
    with pytest.raises(ValueError, match="looser"):
        ContactRules.model_validate({"jurisdictions": {"XX": {"max_calls_7d": 9}}})


def test_worklist_ranks_by_value_respects_rules_and_says_why() -> None:
    frame = candidates(
        [
            (1, "call", "evening", 300.0),
            (1, "sms", "evening", 50.0),
            (2, "call", "morning", 200.0),  # capped: falls back to sms
            (2, "sms", "morning", 40.0),
            (3, "call", "evening", 500.0),  # disputed: nothing at all
            (4, "call", "evening", 100.0),  # Washington: 20:00 is the latest hour
            (5, "email", "afternoon", 10.0),  # opted out of email: the only option
            (6, "call", "afternoon", 5.0),  # no capacity left
        ]
    )
    who = accounts(
        (1, "TX", "America/Chicago"),
        (2, "NY", "America/New_York"),
        (3, "CA", "America/Los_Angeles"),
        (4, "WA", "America/Los_Angeles"),
        (5, "FL", "America/New_York"),
        (6, "TX", "America/Chicago"),
    )
    histories = {
        2: AccountHistory(call_days=days_ago(1, 2, 3, 4, 5, 6, 6)),
        3: AccountHistory(last_dispute=DAY - timedelta(days=3)),
        5: AccountHistory(opted_out=frozenset({"email"})),
    }
    capacity = {"call": 2, "sms": 5, "email": 5}
    worklist, excluded = build_worklist(frame, who, histories, NO_FOLLOW_UPS, RULES, DAY, capacity)
    assert worklist[["account_id", "channel"]].values.tolist() == [
        [1, "call"],
        [4, "call"],
        [2, "sms"],
    ]
    assert worklist["rank"].tolist() == [1, 2, 3]
    windows = dict(zip(worklist["account_id"], worklist["local_window"], strict=True))
    assert windows[1] == "17:00-21:00" and windows[4] == "17:00-20:00"
    assert worklist.set_index("account_id").loc[4, "timezone"] == "America/Los_Angeles"
    reasons = dict(zip(excluded["account_id"], excluded["reason"], strict=True))
    assert reasons[3] == f"blocked: dispute under verification until {DAY + timedelta(days=27)}"
    assert reasons[5] == "blocked: email: opted out"
    assert 2 not in reasons and 6 not in reasons  # account 6 only missed the capacity cut
    assert (worklist["channel"] == "call").sum() <= capacity["call"]


def test_follow_ups_come_first_and_obey_the_rules() -> None:
    frame = candidates([(1, "call", "evening", 900.0), (2, "call", "evening", 800.0)])
    who = accounts((1, "TX", "America/Chicago"), (2, "TX", "America/Chicago"), (3, "MA", "X"))
    follow_ups = pd.DataFrame(
        [
            {"account_id": 2, "kind": "promise_reminder", "detail": "100.00 due 2026-11-25"},
            {"account_id": 3, "kind": "broken_promise", "detail": "50.00 due 2026-11-20"},
        ]
    )
    histories = {3: AccountHistory(call_days=days_ago(1, 2))}  # Massachusetts: 2 calls in 7 days
    worklist, excluded = build_worklist(
        frame, who, histories, follow_ups, RULES, DAY, {"call": 5, "sms": 5}
    )
    assert worklist[["account_id", "kind", "channel"]].values.tolist() == [
        [2, "promise_reminder", "sms"],
        [1, "best_action", "call"],
    ]
    assert excluded.set_index("account_id").loc[3, "reason"].startswith("blocked: call cap")


def test_follow_ups_and_histories_come_from_the_contract_tables() -> None:
    from features.compliance import contact_histories
    from serving.worklist import promise_follow_ups

    def utc(text: str) -> pd.Timestamp:
        return pd.Timestamp(text, tz="UTC")

    zones = pd.Series(["America/New_York"] * 3, index=[1, 2, 3])
    promises = pd.DataFrame(
        {
            "account_id": [1, 2, 3, 3],
            "due_at": [
                utc("2026-11-25 05:00"),
                utc("2026-11-20 05:00"),
                utc("2026-11-20 05:00"),
                utc("2026-11-01 05:00"),
            ],
            "amount": [100.0, 50.0, 80.0, 80.0],
            "kept": pd.array([pd.NA, False, False, True], dtype="boolean"),
            "offer_id": pd.array([pd.NA, pd.NA, 7, 7], dtype="Int64"),
        }
    )
    offers = pd.DataFrame({"offer_id": [7], "kind": ["payment_plan"]})
    follow = promise_follow_ups(promises, offers, zones, DAY)
    assert follow.values.tolist() == [
        ["1", "promise_reminder", "100.00 due 2026-11-25"],  # ids come back as text
        ["2", "broken_promise", "50.00 was due 2026-11-20"],
        ["3", "plan_check", "80.00 was due 2026-11-20"],
    ]
    contacts = pd.DataFrame(
        {
            "account_id": [1, 1, 1, 2, 2],
            "channel": ["call", "call", "sms", "call", "email"],
            "direction": ["outbound"] * 5,
            # 01:00 UTC is the evening before in New York
            "attempted_at": [
                utc("2026-11-23 15:00"),
                utc("2026-11-17 01:00"),
                utc("2026-11-22 15:00"),
                utc("2026-11-20 15:00"),
                utc("2026-11-24 18:00"),
            ],
            "outcome": ["no_answer", "no_answer", "opted_out", "promise_to_pay", "opted_out"],
        }
    )
    histories = contact_histories(contacts, zones, DAY)
    assert histories["1"].call_days == [date(2026, 11, 23)]  # 11-16 local is 8 days before
    assert histories["1"].opted_out == frozenset({"sms"})
    assert histories["2"].last_conversation == date(2026, 11, 20)
    assert histories["2"].opted_out == frozenset()  # the e-mail opt-out happens on the day itself


def test_openapi_documents_every_endpoint_with_examples_and_auth() -> None:
    from serving.app import create_app

    spec = create_app().openapi()
    schemas = spec["components"]["schemas"]
    for path, operations in spec["paths"].items():
        for method, operation in operations.items():
            assert operation.get("summary"), (method, path)
            if path != "/health":
                assert {"401", "403"} <= set(operation["responses"]), (method, path)
            answer = operation["responses"]["200"]["content"]
            reference = answer.get("application/json", {}).get("schema", {}).get("$ref")
            if reference:
                assert "examples" in schemas[reference.rsplit("/", 1)[-1]], (method, path)
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if body:
                assert "examples" in schemas[body["schema"]["$ref"].rsplit("/", 1)[-1]]


def test_a_bad_rules_file_is_named_with_its_problem(tmp_path: Path) -> None:
    from data_contracts.contact_rules import RulesError

    with pytest.raises(RulesError, match=r"nowhere\.yaml: No such file"):
        load_rules(tmp_path / "nowhere.yaml")
    broken = tmp_path / "broken.yaml"
    broken.write_text("regions: [1, 2\n")
    with pytest.raises(RulesError, match=r"broken\.yaml: not valid YAML.*line 2"):
        load_rules(broken)
    unknown = tmp_path / "unknown.yaml"
    unknown.write_text("default:\n  calls_per_week: lots\n")
    with pytest.raises(RulesError, match=r"unknown\.yaml: default\.calls_per_week"):
        load_rules(unknown)


def test_closed_accounts_are_listed_in_the_order_asked_with_their_reason() -> None:
    closed = pd.Series(
        ["closed: settled 2026-01-04", "closed: deceased 2025-12-01"], index=[7, 3], dtype=object
    )
    excluded = closed_exclusions(np.array([1, 3, 5, 7]), closed)
    assert excluded.to_dict("records") == [
        {"account_id": 3, "reason": "closed: deceased 2025-12-01"},
        {"account_id": 7, "reason": "closed: settled 2026-01-04"},
    ]
    assert closed_exclusions(np.array([1, 2]), closed).empty
    assert closed_exclusions(np.array([1]), pd.Series(dtype=object)).empty
