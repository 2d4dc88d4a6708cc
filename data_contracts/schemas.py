"""The tables that come into cobranza, one pandera model per table.

Each table is stored as `<table>.parquet` in a portfolio folder. Timestamps are UTC with
microsecond precision; naive timestamps in an input file are read as UTC. Amounts are in the
account's currency. Enumerations are stored as strings (categoricals in memory).

These models check one table at a time: types, nulls, ranges, allowed values and the order of
timestamps within a row. Rules that span tables (referential integrity, events before the
account was opened, duplicate ids) live in `data_contracts.validation`.
"""

from __future__ import annotations

from typing import Annotated, Any

import numpy as np
import pandas as pd
import pandera.pandas as pa
from pandera.typing import Series

from data_contracts.vocabulary import (
    ACCOUNT_EVENT_KINDS,
    AGE_BANDS,
    CHANNELS,
    DIRECTIONS,
    GENDERS,
    OFFER_KINDS,
    OUTCOMES,
    OUTCOMES_BY_CHANNEL,
    PAYMENT_METHODS,
    PRODUCTS,
    iana_timezones,
)

Timestamp = Annotated[pd.DatetimeTZDtype, "us", "UTC"]
Category = pd.CategoricalDtype
NullableInt = pd.Int64Dtype
NullableBool = pd.BooleanDtype


MAX_ID_LENGTH = 64
"""Ids are text of 1 to 64 characters: account numbers as the agency writes them (`ACC-000123`,
UUIDs, numbers with leading zeros), compared exactly. Integers in the input are read as their
decimal text; ids are categoricals in memory (one copy of each distinct id per column)."""


ROW_ID_DTYPE = pd.StringDtype("pyarrow")
"""The dtype of ids that are about as many as the rows holding them: an event's own id (a
payment's, a contact's) and an offer's id, which at most a few contacts and promises cite. Arrow
text, not a categorical of as many categories as rows. Ids that repeat (a debtor's, an
account's) are categoricals."""


def id_field(description: str, nullable: bool = False) -> Any:
    """A pandera field holding ids (see `MAX_ID_LENGTH`); `id_columns` finds them."""
    return pa.Field(nullable=nullable, description=description, metadata={"id": True})


def row_id_field(description: str, nullable: bool = False) -> Any:
    """A pandera field holding ids about as many as its rows, as `ROW_ID_DTYPE`."""
    return pa.Field(
        nullable=nullable,
        description=description,
        metadata={"id": True},
        dtype_kwargs={"storage": "pyarrow"},
    )


def _not_before(later: pd.Series, earlier: pd.Series) -> pd.Series:
    """True where `later` is not before `earlier`, or where either is missing."""
    return (later >= earlier) | later.isna() | earlier.isna()


class Contract(pa.DataFrameModel):
    """Base of every table contract: extra columns are allowed and carried along."""

    class Config:
        strict = False
        coerce = False


class Debtors(Contract):
    """People who owe on one or more accounts. `age_band` and `gender` are audit-only:
    they exist for fairness audits and must never be model features."""

    debtor_id: Series[Category] = id_field("Unique id of the debtor.")
    timezone: Series[Category] = pa.Field(
        isin=sorted(iana_timezones()),
        description="IANA time zone of the debtor's residence; contact hours are local to it.",
    )
    region: Series[Category] = pa.Field(
        description="Region or state of residence; drives jurisdiction rules and audits."
    )
    age_band: Series[Category] = pa.Field(
        isin=list(AGE_BANDS),
        nullable=True,
        description="Age band, audit-only (never a model input); null when unknown.",
    )
    gender: Series[Category] = pa.Field(
        isin=list(GENDERS),
        nullable=True,
        description="Gender where known, audit-only (never a model input); null when unknown.",
    )


class Accounts(Contract):
    """Debts placed with the collection operation, one row per account."""

    account_id: Series[Category] = id_field("Unique id of the account.")
    debtor_id: Series[Category] = id_field("The debtor who owes it.")
    product: Series[Category] = pa.Field(
        isin=list(PRODUCTS), description="Kind of credit the debt comes from."
    )
    currency: Series[Category] = pa.Field(
        str_matches=r"^[A-Z]{3}$", description="ISO 4217 code of every amount on the account."
    )
    original_balance: Series[np.float64] = pa.Field(
        ge=0,
        description=(
            "Balance owed when the account was placed (the placed balance); 0 for an account "
            "placed with nothing owed, such as a card scored before its first missed payment."
        ),
    )
    current_balance: Series[np.float64] = pa.Field(
        ge=0, description="Balance still owed at the end of the data."
    )
    opened_at: Series[Timestamp] = pa.Field(description="When the credit was opened.")
    delinquent_since: Series[Timestamp] = pa.Field(
        nullable=True,
        description=(
            "First missed due date; days past due are counted from here. Null for an account "
            "that is current (early-stage portfolios score accounts before they go delinquent)."
        ),
    )
    charged_off_at: Series[Timestamp] = pa.Field(
        nullable=True, description="When the creditor charged the debt off; null if it has not."
    )
    placed_at: Series[Timestamp] = pa.Field(
        description="When the account entered collections (placed with us)."
    )
    days_past_due_at_placement: Series[np.int64] = pa.Field(
        ge=0, description="Whole days from delinquent_since to placed_at; 0 if current."
    )
    creditor: Series[Category] = pa.Field(description="Creditor who placed the account.")

    @pa.dataframe_check(
        name="delinquent_after_opened", error="delinquent_since is before opened_at"
    )
    def _delinquent_after_opened(cls, df: pd.DataFrame) -> pd.Series:
        return _not_before(df["delinquent_since"], df["opened_at"])

    @pa.dataframe_check(
        name="placed_after_delinquent", error="placed_at is before delinquent_since"
    )
    def _placed_after_delinquent(cls, df: pd.DataFrame) -> pd.Series:
        return _not_before(df["placed_at"], df["delinquent_since"])

    @pa.dataframe_check(name="placed_after_opened", error="placed_at is before opened_at")
    def _placed_after_opened(cls, df: pd.DataFrame) -> pd.Series:
        return _not_before(df["placed_at"], df["opened_at"])

    @pa.dataframe_check(name="charged_off_after_opened", error="charged_off_at is before opened_at")
    def _charged_off_after_opened(cls, df: pd.DataFrame) -> pd.Series:
        return _not_before(df["charged_off_at"], df["opened_at"])

    @pa.dataframe_check(
        name="charged_off_after_delinquent", error="charged_off_at is before delinquent_since"
    )
    def _charged_off_after_delinquent(cls, df: pd.DataFrame) -> pd.Series:
        return _not_before(df["charged_off_at"], df["delinquent_since"])

    @pa.dataframe_check(
        name="days_past_due_matches_dates",
        error="days_past_due_at_placement is more than 1 day off placed_at - delinquent_since",
    )
    def _days_past_due_matches_dates(cls, df: pd.DataFrame) -> pd.Series:
        counted = (df["placed_at"] - df["delinquent_since"]).dt.days.fillna(0)
        gap = (df["days_past_due_at_placement"] - counted).abs()
        return (gap <= 1) | gap.isna()


class Payments(Contract):
    """Money received on an account."""

    payment_id: Series[pd.StringDtype] = row_id_field("Unique id of the payment.")
    account_id: Series[Category] = id_field("Account the payment is for.")
    paid_at: Series[Timestamp] = pa.Field(description="When the payment was received (UTC).")
    amount: Series[np.float64] = pa.Field(gt=0, description="Amount received.")
    method: Series[Category] = pa.Field(
        isin=list(PAYMENT_METHODS), description="How the debtor paid."
    )


_ALLOWED_OUTCOME = np.zeros((len(CHANNELS), len(OUTCOMES)), dtype=bool)
for _c, _channel in enumerate(CHANNELS):
    for _o, _outcome in enumerate(OUTCOMES):
        _ALLOWED_OUTCOME[_c, _o] = _outcome in OUTCOMES_BY_CHANNEL[_channel]


class Contacts(Contract):
    """Contact attempts (outbound) and contacts started by the debtor (inbound)."""

    contact_id: Series[pd.StringDtype] = row_id_field("Unique id of the contact.")
    account_id: Series[Category] = id_field("Account the contact is about.")
    channel: Series[Category] = pa.Field(
        isin=list(CHANNELS), description="call, sms, email or letter."
    )
    direction: Series[Category] = pa.Field(
        isin=list(DIRECTIONS), description="outbound (we reached out) or inbound (debtor did)."
    )
    attempted_at: Series[Timestamp] = pa.Field(description="When the attempt was made (UTC).")
    outcome: Series[Category] = pa.Field(
        isin=list(OUTCOMES), description="What came of it; allowed values depend on the channel."
    )
    offer_id: Series[pd.StringDtype] = row_id_field(
        "Offer presented in this contact, if any.", nullable=True
    )
    action_probability: Series[np.float64] = pa.Field(
        gt=0,
        le=1,
        nullable=True,
        description=(
            "Probability with which the logging policy chose this channel, local hour and offer "
            "(kind and terms), given that it contacted the account that day; when the offer "
            "could not reach the debtor (call not answered, message not delivered), of the "
            "channel and hour alone. Null when inbound, or unknown: a team of people choosing "
            "contacts records no probability, so leave it null, never 1 or a guess. Contacts "
            "without it count in every history feature but not in training or off-policy "
            "evaluation of the next-best-action model, which weigh each contact by it."
        ),
    )

    @pa.dataframe_check(
        name="outcome_fits_channel", error="outcome is not possible on this channel"
    )
    def _outcome_fits_channel(cls, df: pd.DataFrame) -> pd.Series:
        channel = pd.Categorical(df["channel"], categories=CHANNELS).codes
        outcome = pd.Categorical(df["outcome"], categories=OUTCOMES).codes
        unknown = (channel < 0) | (outcome < 0)  # reported by the isin checks instead
        fits = _ALLOWED_OUTCOME[np.maximum(channel, 0), np.maximum(outcome, 0)]
        return pd.Series(unknown | fits, index=df.index)

    @pa.dataframe_check(
        name="inbound_has_no_action_probability",
        error="an inbound contact was not chosen by a policy, so it has no action_probability",
    )
    def _inbound_has_no_probability(cls, df: pd.DataFrame) -> pd.Series:
        return (df["direction"] != "inbound") | df["action_probability"].isna()


class Offers(Contract):
    """Settlement offers: a discount for paying in full, or a payment plan."""

    offer_id: Series[pd.StringDtype] = row_id_field("Unique id of the offer.")
    account_id: Series[Category] = id_field("Account the offer is for.")
    kind: Series[Category] = pa.Field(
        isin=list(OFFER_KINDS), description="discount or payment_plan."
    )
    discount_pct: Series[np.float64] = pa.Field(
        gt=0,
        lt=100,
        nullable=True,
        description="Percent of the balance forgiven if settled; discounts only.",
    )
    installments: Series[NullableInt] = pa.Field(
        ge=2, nullable=True, description="Number of monthly installments; payment plans only."
    )
    offered_at: Series[Timestamp] = pa.Field(description="When the offer was made.")
    expires_at: Series[Timestamp] = pa.Field(description="When the offer lapses.")
    accepted_at: Series[Timestamp] = pa.Field(
        nullable=True, description="When the debtor accepted; null if never."
    )

    @pa.dataframe_check(
        name="offer_terms_fit_kind",
        error="a discount needs discount_pct and no installments; a payment plan the reverse",
    )
    def _terms_fit_kind(cls, df: pd.DataFrame) -> pd.Series:
        discount = (df["kind"] == "discount").to_numpy()
        plan = (df["kind"] == "payment_plan").to_numpy()
        has_pct = df["discount_pct"].notna().to_numpy()
        has_installments = df["installments"].notna().to_numpy()
        fits = (discount & has_pct & ~has_installments) | (plan & has_installments & ~has_pct)
        return pd.Series(fits | ~(discount | plan), index=df.index)

    @pa.dataframe_check(name="expires_after_offered", error="expires_at is not after offered_at")
    def _expires_after_offered(cls, df: pd.DataFrame) -> pd.Series:
        ok = df["expires_at"] > df["offered_at"]
        return ok | df["expires_at"].isna() | df["offered_at"].isna()

    @pa.dataframe_check(
        name="accepted_while_open", error="accepted_at is outside offered_at..expires_at"
    )
    def _accepted_while_open(cls, df: pd.DataFrame) -> pd.Series:
        return _not_before(df["accepted_at"], df["offered_at"]) & _not_before(
            df["expires_at"], df["accepted_at"]
        )


class Promises(Contract):
    """Promises to pay. Each installment of a payment plan is a promise linked to its offer."""

    promise_id: Series[pd.StringDtype] = row_id_field("Unique id of the promise.")
    account_id: Series[Category] = id_field("Account the promise is for.")
    made_at: Series[Timestamp] = pa.Field(description="When the debtor made the promise.")
    due_at: Series[Timestamp] = pa.Field(
        description="Start (local midnight) of the day the payment is due."
    )
    amount: Series[np.float64] = pa.Field(gt=0, description="Amount promised.")
    kept: Series[NullableBool] = pa.Field(
        nullable=True,
        description=(
            "Derived from payments: true if payments from made_at until the end of the grace "
            "period after due_at add up to the amount; null while that period is still open."
        ),
    )
    offer_id: Series[pd.StringDtype] = row_id_field(
        "Payment plan this promise is an installment of, if any.", nullable=True
    )

    @pa.dataframe_check(name="due_after_made", error="due_at is more than a day before made_at")
    def _due_after_made(cls, df: pd.DataFrame) -> pd.Series:
        # due_at is the local midnight of the due day, so a same-day promise starts before made_at.
        ok = df["due_at"] + pd.Timedelta(days=1) >= df["made_at"]
        return ok | df["due_at"].isna() | df["made_at"].isna()


STATEMENT_STATUSES: tuple[str, ...] = ("no_use", "paid_in_full", "revolving", "delinquent")


class Statements(Contract):
    """Monthly statements sent by the creditor (optional table): the account's balance and
    repayment status month by month, as card issuers report them."""

    statement_id: Series[pd.StringDtype] = row_id_field("Unique id of the statement.")
    account_id: Series[Category] = id_field("Account the statement is for.")
    statement_at: Series[Timestamp] = pa.Field(description="Statement (closing) date, UTC.")
    balance: Series[np.float64] = pa.Field(
        description="Statement balance; negative when the account holds a credit."
    )
    credit_limit: Series[np.float64] = pa.Field(
        ge=0, nullable=True, description="Credit limit on the statement date, if any."
    )
    status: Series[Category] = pa.Field(
        isin=list(STATEMENT_STATUSES),
        description=(
            "no_use (nothing to pay), paid_in_full, revolving (minimum paid, balance carried) "
            "or delinquent."
        ),
    )
    days_past_due: Series[np.int64] = pa.Field(
        ge=0, description="Days past due on the statement date; 0 unless delinquent."
    )

    @pa.dataframe_check(
        name="delinquent_status_has_days_past_due",
        error="status is delinquent exactly when days_past_due is above 0",
    )
    def _status_matches_days(cls, df: pd.DataFrame) -> pd.Series:
        delinquent = df["status"] == "delinquent"
        late = df["days_past_due"] > 0
        return (delinquent == late) | df["status"].isna() | df["days_past_due"].isna()


class AccountEvents(Contract):
    """What happened to an account as a whole (optional table): settled for less, paid in
    full, recalled by the creditor, sold, sent to legal or to another agency, closed for
    bankruptcy or death, or reopened. Every kind but `reopened` closes the account. Extra
    columns (a free-text note, say) are carried along like in every table."""

    event_id: Series[pd.StringDtype] = row_id_field("Unique id of the event.")
    account_id: Series[Category] = id_field("Account the event is about.")
    occurred_at: Series[Timestamp] = pa.Field(description="When it took effect (UTC).")
    kind: Series[Category] = pa.Field(
        isin=list(ACCOUNT_EVENT_KINDS),
        description=(
            "settled, paid_in_full, recalled, sold, legal (attorney or court), placed_elsewhere "
            "(another agency), bankrupt, deceased (all close the account) or reopened."
        ),
    )
    amount_forgiven: Series[np.float64] = pa.Field(
        ge=0,
        nullable=True,
        description=(
            "Balance written off by a settlement (what was owed minus what was paid to settle); "
            "required for settled, null for every other kind."
        ),
    )

    @pa.dataframe_check(
        name="amount_forgiven_fits_kind",
        error="amount_forgiven is required for settled and must be null for other kinds",
    )
    def _forgiven_fits_kind(cls, df: pd.DataFrame) -> pd.Series:
        settled = (df["kind"] == "settled").to_numpy(bool)
        known = df["kind"].isin(list(ACCOUNT_EVENT_KINDS)).to_numpy(bool)
        has_amount = df["amount_forgiven"].notna().to_numpy(bool)
        fits = settled == has_amount
        return pd.Series(fits | ~known, index=df.index)  # unknown kinds: the isin check


CONTRACTS: dict[str, type[Contract]] = {
    "debtors": Debtors,
    "accounts": Accounts,
    "offers": Offers,
    "payments": Payments,
    "promises": Promises,
    "contacts": Contacts,
    "statements": Statements,
    "account_events": AccountEvents,
}
"""Every table of a portfolio, in the order they are validated (parents before children)."""

ID_COLUMNS: dict[str, str] = {
    "debtors": "debtor_id",
    "accounts": "account_id",
    "offers": "offer_id",
    "payments": "payment_id",
    "promises": "promise_id",
    "contacts": "contact_id",
    "statements": "statement_id",
    "account_events": "event_id",
}
OPTIONAL_TABLES: frozenset[str] = frozenset({"statements", "account_events"})
"""Tables a portfolio may leave out; they are then treated as empty."""
AUDIT_ONLY_COLUMNS: dict[str, tuple[str, ...]] = {"debtors": ("age_band", "gender")}
"""Columns kept only for the fairness audit, per table: never model inputs, always nullable.
A value outside the contract in one is set to null (and counted) instead of quarantining the
row, since no model, feature or rule reads it."""
PROTECTED_ATTRIBUTES: tuple[str, ...] = (*AUDIT_ONLY_COLUMNS["debtors"], "region")
"""Debtor attributes the fairness audit groups by; never model inputs. `region` is audited but
is not audit-only: it decides the jurisdiction of the contact rules, so it stays required."""


def id_columns(table: str) -> list[str]:
    """The columns of a table's contract that hold ids (its own and those it refers to)."""
    schema = CONTRACTS[table].to_schema()
    return [name for name, column in schema.columns.items() if (column.metadata or {}).get("id")]


def contract_columns(table: str) -> dict[str, str]:
    """Column name -> dtype string of a table's contract, in contract order."""
    return {name: str(dtype) for name, dtype in contract_dtypes(table).items()}


def contract_dtypes(table: str) -> dict[str, object]:
    """Column name -> pandas dtype of a table's contract, in contract order."""
    schema = CONTRACTS[table].to_schema()
    return {name: column.dtype.type for name, column in schema.columns.items()}


def empty_table(table: str) -> pd.DataFrame:
    """A zero-row frame with the contract's columns and dtypes."""
    return pd.DataFrame(
        {name: pd.Series(dtype=dtype) for name, dtype in contract_dtypes(table).items()}  # type: ignore[call-overload]
    )
