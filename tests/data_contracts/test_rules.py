"""Each contract rule with a good case and a bad case."""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import pytest

from data_contracts.schemas import CONTRACTS, contract_columns
from data_contracts.validation import ContractError, validate_tables
from tests.conftest import tiny_tables, utc

Mutation = Callable[[dict[str, pd.DataFrame]], None]


def _set(table: str, row: int, column: str, value: object) -> Mutation:
    def mutate(tables: dict[str, pd.DataFrame]) -> None:
        frame = tables[table]
        if isinstance(frame[column].dtype, pd.CategoricalDtype) and value is not None:
            frame[column] = frame[column].cat.add_categories([value])
        frame.loc[row, column] = value

    return mutate


def _as_text(table: str, column: str, row: int, text: str) -> Mutation:
    def mutate(tables: dict[str, pd.DataFrame]) -> None:
        frame = tables[table]
        values = frame[column].astype(object)
        values.iloc[row] = text
        frame[column] = values

    return mutate


def _append_copy(table: str, row: int) -> Mutation:
    def mutate(tables: dict[str, pd.DataFrame]) -> None:
        frame = tables[table]
        tables[table] = pd.concat([frame, frame.iloc[[row]]], ignore_index=True)

    return mutate


def _drop(table: str, row: int) -> Mutation:
    def mutate(tables: dict[str, pd.DataFrame]) -> None:
        tables[table] = tables[table].drop(index=row).reset_index(drop=True)

    return mutate


# (table, row that must be quarantined, rule expected, mutation)
CASES: list[tuple[str, int, str, Mutation]] = [
    ("debtors", 0, "timezone:isin", _set("debtors", 0, "timezone", "Mars/Olympus")),
    ("debtors", 0, "region:missing_value", _set("debtors", 0, "region", None)),
    ("debtors", 1, "debtor_id:type", _as_text("debtors", "debtor_id", 1, " 2")),
    ("debtors", 1, "duplicate_id", _set("debtors", 1, "debtor_id", 1)),
    ("accounts", 0, "product:isin", _set("accounts", 0, "product", "lottery")),
    ("accounts", 0, "currency:str_matches", _set("accounts", 0, "currency", "usd")),
    (
        "accounts",
        1,
        "original_balance:greater_than_or_equal_to",
        _set("accounts", 1, "original_balance", -5.0),
    ),
    (
        "accounts",
        1,
        "current_balance:greater_than_or_equal_to",
        _set("accounts", 1, "current_balance", -0.01),
    ),
    ("accounts", 2, "original_balance:type", _as_text("accounts", "original_balance", 2, "a lot")),
    ("accounts", 2, "placed_at:type", _as_text("accounts", "placed_at", 2, "last spring")),
    ("accounts", 0, "delinquent_after_opened", _set("accounts", 0, "opened_at", utc("2024-02-01"))),
    ("accounts", 1, "placed_after_delinquent", _set("accounts", 1, "placed_at", utc("2024-04-01"))),
    (
        "accounts",
        0,
        "charged_off_after_delinquent",
        _set("accounts", 0, "charged_off_at", utc("2023-12-01")),
    ),
    (
        "accounts",
        0,
        "days_past_due_matches_dates",
        _set("accounts", 0, "days_past_due_at_placement", 30),
    ),
    (
        "accounts",
        1,
        "days_past_due_at_placement:greater_than_or_equal_to",
        _set("accounts", 1, "days_past_due_at_placement", -1),
    ),
    ("accounts", 2, "unknown_debtor", _set("accounts", 2, "debtor_id", 99)),
    ("accounts", 2, "debtor_quarantined", _set("debtors", 1, "timezone", "Nowhere/Land")),
    ("payments", 0, "amount:greater_than", _set("payments", 0, "amount", 0.0)),
    ("payments", 0, "amount:type", _as_text("payments", "amount", 0, "12,50")),
    ("payments", 1, "method:isin", _set("payments", 1, "method", "bitcoin")),
    ("payments", 1, "unknown_account", _set("payments", 1, "account_id", 77)),
    ("payments", 0, "before_account_opened", _set("payments", 0, "paid_at", utc("2021-01-01"))),
    ("payments", 2, "duplicate_id", _set("payments", 2, "payment_id", 1000)),
    ("payments", 3, "duplicate_id", _append_copy("payments", 0)),
    ("payments", 0, "account_quarantined", _set("accounts", 0, "currency", "dollars")),
    ("contacts", 0, "channel:isin", _set("contacts", 0, "channel", "pigeon")),
    ("contacts", 0, "outcome:isin", _set("contacts", 0, "outcome", "maybe")),
    ("contacts", 1, "direction:isin", _set("contacts", 1, "direction", "sideways")),
    ("contacts", 2, "outcome_fits_channel", _set("contacts", 2, "outcome", "voicemail")),
    (
        "contacts",
        3,
        "inbound_has_no_action_probability",
        _set("contacts", 3, "action_probability", 0.3),
    ),
    (
        "contacts",
        0,
        "action_probability:greater_than",
        _set("contacts", 0, "action_probability", 0.0),
    ),
    (
        "contacts",
        0,
        "action_probability:less_than_or_equal_to",
        _set("contacts", 0, "action_probability", 1.5),
    ),
    ("contacts", 1, "unknown_offer", _set("contacts", 1, "offer_id", 999)),
    ("contacts", 0, "offer_of_other_account", _set("contacts", 0, "offer_id", 101)),
    (
        "contacts",
        2,
        "before_account_opened",
        _set("contacts", 2, "attempted_at", utc("2020-01-01")),
    ),
    ("contacts", 1, "offer_quarantined", _set("offers", 0, "discount_pct", 150.0)),
    ("offers", 0, "offer_terms_fit_kind", _set("offers", 0, "installments", 3)),
    ("offers", 1, "offer_terms_fit_kind", _set("offers", 1, "installments", None)),
    ("offers", 1, "installments:greater_than_or_equal_to", _set("offers", 1, "installments", 1)),
    ("offers", 0, "discount_pct:less_than", _set("offers", 0, "discount_pct", 100.0)),
    ("offers", 0, "kind:isin", _set("offers", 0, "kind", "gift")),
    (
        "offers",
        0,
        "expires_after_offered",
        _set("offers", 0, "expires_at", utc("2024-07-05 15:00")),
    ),
    ("offers", 1, "accepted_while_open", _set("offers", 1, "accepted_at", utc("2024-07-01"))),
    ("offers", 0, "before_account_opened", _set("offers", 0, "offered_at", utc("2021-01-01"))),
    ("promises", 0, "amount:greater_than", _set("promises", 0, "amount", -1.0)),
    ("promises", 0, "due_after_made", _set("promises", 0, "due_at", utc("2024-07-01"))),
    ("promises", 1, "kept:type", _as_text("promises", "kept", 1, "perhaps")),
    ("promises", 1, "offer_of_other_account", _set("promises", 1, "offer_id", 100)),
    ("promises", 0, "unknown_account", _set("promises", 0, "account_id", 5)),
    (
        "statements",
        0,
        "delinquent_status_has_days_past_due",
        _set("statements", 0, "days_past_due", 0),
    ),
    ("statements", 0, "status:isin", _set("statements", 0, "status", "frozen")),
    (
        "statements",
        0,
        "credit_limit:greater_than_or_equal_to",
        _set("statements", 0, "credit_limit", -1.0),
    ),
]


NOT_IDS = {
    "empty": "",
    "spaces around": "A-1 ",
    "control character": "A\t1",
    "too long": "9" * 65,
    "not Unicode": "A\udc80",  # a lone surrogate, as bytes read leniently give
}
ID_CASES: list[tuple[str, int, str, Mutation]] = [
    (table, 0, f"{column}:type", _as_text(table, column, 0, text))
    for table, column in {
        "debtors": "debtor_id",
        "accounts": "account_id",
        "payments": "payment_id",
        "contacts": "contact_id",
        "offers": "offer_id",
        "promises": "promise_id",
        "statements": "statement_id",
        "account_events": "event_id",
    }.items()
    for text in NOT_IDS.values()
]
ID_CASES += [
    ("payments", 0, "payment_id:type", _as_text("payments", "payment_id", 0, True)),  # type: ignore[arg-type]
    ("payments", 0, "payment_id:type", _as_text("payments", "payment_id", 0, 1.5)),  # type: ignore[arg-type]
]
CASES += ID_CASES
# ids are compared as text: account 10 exists, "010" is another account
CASES += [("payments", 0, "unknown_account", _as_text("payments", "account_id", 0, "010"))]
CASES += [
    ("offers", 0, "discount_pct:greater_than(0)", _set("offers", 0, "discount_pct", 0.0)),
    (
        "statements",
        0,
        "days_past_due:greater_than_or_equal_to(0)",
        _set("statements", 0, "days_past_due", -30),
    ),
    ("account_events", 1, "kind:isin", _set("account_events", 1, "kind", "closed")),
    ("account_events", 1, "unknown_account", _set("account_events", 1, "account_id", 99)),
    ("account_events", 2, "duplicate_id", _set("account_events", 2, "event_id", 2)),
    (
        "account_events",
        0,
        "amount_forgiven_fits_kind",  # a settlement must say what it forgave
        _set("account_events", 0, "amount_forgiven", float("nan")),
    ),
    (
        "account_events",
        1,
        "amount_forgiven_fits_kind",  # only settlements forgive
        _set("account_events", 1, "amount_forgiven", 10.0),
    ),
    (
        "account_events",
        0,
        "amount_forgiven:greater_than_or_equal_to",
        _set("account_events", 0, "amount_forgiven", -5.0),
    ),
    (
        "account_events",
        0,
        "before_account_placed",  # after opening (2021) but before placement (2024-05-01)
        _set("account_events", 0, "occurred_at", utc("2024-04-30")),
    ),
    (
        "account_events",
        2,
        "occurred_at:missing_value",
        _set("account_events", 2, "occurred_at", None),
    ),
    (
        "accounts",
        1,
        "placed_after_opened",
        lambda t: (
            _set("accounts", 1, "delinquent_since", None)(t),
            _set("accounts", 1, "days_past_due_at_placement", 0)(t),
            _set("accounts", 1, "placed_at", utc("2020-01-01"))(t),
        ),
    ),
    (
        "accounts",
        2,
        "charged_off_after_opened",
        lambda t: (
            _set("accounts", 2, "delinquent_since", None)(t),
            _set("accounts", 2, "days_past_due_at_placement", 0)(t),
            _set("accounts", 2, "charged_off_at", utc("2020-01-01"))(t),
        ),
    ),
]


def test_the_tiny_portfolio_is_valid(tables: dict[str, pd.DataFrame]) -> None:
    result = validate_tables(tables)
    assert result.quarantined_rows == 0, result.summary()
    for name, frame in tables.items():
        assert len(result.valid[name]) == len(frame)
        assert {n: str(d) for n, d in result.valid[name].dtypes.items()} == contract_columns(name)


@pytest.mark.parametrize(
    ("table", "row", "rule", "mutate"), CASES, ids=[f"{c[0]}-{c[2]}" for c in CASES]
)
def test_rule_quarantines_exactly_the_bad_row(
    table: str, row: int, rule: str, mutate: Mutation
) -> None:
    tables = tiny_tables()
    mutate(tables)
    result = validate_tables(tables)
    quarantined = result.quarantined[table]
    assert list(quarantined["source_row"]) == [row]
    rules = quarantined["quarantine_rules"].iloc[0].split("; ")
    assert any(r == rule or r.startswith(rule + "(") for r in rules), rules
    assert quarantined["quarantine_reasons"].iloc[0]
    report = result.reports[table]
    assert report.reconciles
    assert report.quarantined_rows == 1
    assert report.first_row_per_rule[rules[0]] == row
    # every other row of that table is kept
    assert report.valid_rows == len(tables[table]) - 1


def test_an_invalid_audit_only_value_is_nulled_and_counted_not_quarantined(
    tables: dict[str, pd.DataFrame],
) -> None:
    _set("debtors", 0, "gender", "F")(tables)
    _set("debtors", 1, "age_band", "101-110")(tables)
    _as_text("debtors", "gender", 1, "x" * 60)(tables)
    result = validate_tables(tables)
    assert result.quarantined_rows == 0 and result.reconciles
    for name, frame in tables.items():  # the debtors, their accounts and events all stay
        assert len(result.valid[name]) == len(frame), name
    debtors = result.valid["debtors"]
    assert debtors["gender"].isna().all()
    assert debtors["age_band"].iloc[0] == "25-34" and pd.isna(debtors["age_band"].iloc[1])
    assert len(debtors["gender"].cat.categories) == 0  # the bad categories are gone too
    notices = {n.column: n for n in result.reports["debtors"].nulled}
    assert notices["gender"].rule == notices["age_band"].rule == "audit_value_invalid"
    assert notices["gender"].rows == 2 and notices["age_band"].rows == 1
    long_value = {"row": 1, "value": "x" * 39 + "…"}  # cut at 40 characters
    assert notices["gender"].first_rows == ({"row": 0, "value": "F"}, long_value)
    assert notices["age_band"].first_rows == ({"row": 1, "value": "101-110"},)
    summary = result.summary()
    assert summary["nulled_values"] == 3
    reported = summary["tables"]["debtors"]["nulled_values"]  # type: ignore[index]
    assert {(n["column"], n["rows"]) for n in reported} == {("gender", 2), ("age_band", 1)}
    assert "debtor_id" not in str(reported)  # rows are named by number, never by id


def test_an_audit_value_of_a_quarantined_debtor_is_not_counted_as_nulled(
    tables: dict[str, pd.DataFrame],
) -> None:
    _set("debtors", 0, "gender", "F")(tables)
    _set("debtors", 0, "timezone", "Mars/Olympus")(tables)
    result = validate_tables(tables)
    assert list(result.quarantined["debtors"]["source_row"]) == [0]
    assert result.quarantined["debtors"]["gender"].iloc[0] == "F"  # raw value kept there
    assert result.reports["debtors"].nulled == ()


def test_naive_and_offset_timestamps_are_read_as_utc(tables: dict[str, pd.DataFrame]) -> None:
    tables["payments"]["paid_at"] = tables["payments"]["paid_at"].dt.tz_convert("Asia/Tokyo")
    tables["contacts"]["attempted_at"] = tables["contacts"]["attempted_at"].dt.tz_localize(None)
    tables["offers"]["offered_at"] = tables["offers"]["offered_at"].dt.strftime(
        "%Y-%m-%dT%H:%M:%SZ"
    )
    result = validate_tables(tables)
    assert result.quarantined_rows == 0
    assert result.valid["payments"]["paid_at"].iloc[0] == utc("2024-07-20 10:00")
    assert result.valid["offers"]["offered_at"].iloc[0] == utc("2024-07-05 15:00")


def test_a_row_breaking_two_rules_is_counted_once_but_lists_both(
    tables: dict[str, pd.DataFrame],
) -> None:
    _set("payments", 0, "amount", -3.0)(tables)
    _set("payments", 0, "method", "barter")(tables)
    result = validate_tables(tables)
    report = result.reports["payments"]
    assert report.quarantined_rows == 1
    assert report.rows_per_rule == {
        "amount:greater_than(0)": 1,
        "method:isin": 1,
    }
    assert report.reconciles


def test_missing_table_and_missing_column_are_clear_errors(
    tables: dict[str, pd.DataFrame],
) -> None:
    without_payments = {k: v for k, v in tables.items() if k != "payments"}
    with pytest.raises(ContractError, match=r"payments.parquet: file not found"):
        validate_tables(without_payments)
    tables["contacts"] = tables["contacts"].drop(columns=["outcome", "channel"])
    with pytest.raises(
        ContractError, match=r"contacts.parquet: missing column\(s\) channel, outcome"
    ):
        validate_tables(tables)


def test_every_missing_table_and_column_is_reported_at_once(
    tables: dict[str, pd.DataFrame],
) -> None:
    del tables["payments"], tables["offers"], tables["statements"]  # statements are optional
    tables["accounts"] = tables["accounts"].drop(columns=["creditor", "charged_off_at"])
    tables["contacts"] = tables["contacts"].drop(columns=["outcome"])
    tables["debtors"] = tables["debtors"].drop(columns=["gender"])  # audit-only, still required
    with pytest.raises(ContractError) as raised:
        validate_tables(tables, where="data/acme")
    assert raised.value.problems == (
        "data/acme/debtors.parquet: missing column(s) gender",
        "data/acme/accounts.parquet: missing column(s) charged_off_at, creditor",
        "data/acme/offers.parquet: file not found (every portfolio needs offers.parquet)",
        "data/acme/payments.parquet: file not found (every portfolio needs payments.parquet)",
        "data/acme/contacts.parquet: missing column(s) outcome",
    )
    assert str(raised.value).count("\n") == 4


def test_statements_are_optional(tables: dict[str, pd.DataFrame]) -> None:
    del tables["statements"]
    result = validate_tables(tables)
    assert result.reports["statements"].input_rows == 0
    assert result.quarantined_rows == 0


def test_account_events_are_optional(tables: dict[str, pd.DataFrame]) -> None:
    del tables["account_events"]
    result = validate_tables(tables)
    assert result.reports["account_events"].input_rows == 0
    assert result.quarantined_rows == 0
    assert contract_columns("account_events") == {
        name: str(dtype) for name, dtype in result.valid["account_events"].dtypes.items()
    }


def test_events_of_a_quarantined_account_are_quarantined_and_counted(
    tables: dict[str, pd.DataFrame],
) -> None:
    _set("accounts", 1, "product", "yacht")(tables)  # account 11: recalled, then reopened
    _set("account_events", 0, "occurred_at", utc("2030-01-01"))(tables)
    result = validate_tables(tables, data_end=utc("2025-01-01"))
    report = result.reports["account_events"]
    assert report.rows_per_rule == {"account_quarantined": 2, "after_data_end": 1}
    assert (report.input_rows, report.valid_rows, report.quarantined_rows) == (3, 0, 3)
    assert report.reconciles
    assert list(result.quarantined["account_events"]["source_row"]) == [0, 1, 2]


def test_extra_columns_travel_with_valid_rows(tables: dict[str, pd.DataFrame]) -> None:
    tables["debtors"] = tables["debtors"].assign(note=["a", "b"])
    result = validate_tables(tables)
    assert list(result.valid["debtors"]["note"]) == ["a", "b"]


def test_quarantine_keeps_the_raw_value(tables: dict[str, pd.DataFrame]) -> None:
    _as_text("payments", "amount", 1, "twelve")(tables)
    result = validate_tables(tables)
    quarantined = result.quarantined["payments"]
    assert quarantined["amount"].iloc[0] == "twelve"
    assert "amount" in quarantined["quarantine_reasons"].iloc[0]


def test_every_contract_column_is_documented() -> None:
    for name, model in CONTRACTS.items():
        assert model.__doc__, name
        for column_name, column in model.to_schema().columns.items():
            assert column.description, f"{name}.{column_name}"


def test_all_rows_invalid_leaves_empty_valid_tables(tables: dict[str, pd.DataFrame]) -> None:
    tables["debtors"]["timezone"] = pd.Categorical(["Nowhere/A", "Nowhere/B"])
    result = validate_tables(tables)
    assert result.reconciles
    for name in tables:  # account_events too: every event's account is gone
        assert len(result.valid[name]) == 0, name
        assert result.reports[name].quarantined_rows == len(tables[name])
    assert np.all(result.valid["accounts"].dtypes.astype(str).to_numpy() != "object")
