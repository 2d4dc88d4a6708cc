"""Collection KPIs per week and segment, from a portfolio's event tables (pure functions).

Definitions (weeks start on Monday, UTC; the segment is the account's product):
- collection rate (gross): amount collected in the week / balance placed up to the week's end;
  net of forgiveness: amount collected / (balance placed - balance forgiven by settlements up
  to the week's end), so a settled account's written-off remainder no longer counts as owed;
- right-party-contact rate per channel: attempts that reached the debtor (a conversation on the
  phone, a click on a message) / attempts;
- promise-to-pay rate: promises made / right-party contacts; kept rate: promises falling due
  in the week that were kept / those falling due with a known outcome;
- average payment, and average days from placement to the first payment (by placement week);
- cost per amount collected: contact attempts times the cost per channel / amount collected;
- roll rates: share of accounts in each days-past-due bucket at a week's start that are in
  the next bucket (or settled: paid, or settled for less) four weeks later;
- blocked by compliance: share of open accounts that may not be called at the week's end
  (7 calls in 7 days, a recent conversation, a call opt-out or a dispute under verification),
  by the same rules the worklist enforces.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

from data_contracts.contact_rules import BlockKind, ContactRules
from data_contracts.vocabulary import RESPONSE_OUTCOMES
from features.compliance import channel_blocks, contact_histories
from features.events import account_status
from pipelines.portfolio import read_portfolio
from training.plots import lines_figure

CALL_BLOCKS: tuple[BlockKind, ...] = tuple(k for k in BlockKind if k is not BlockKind.OUTSIDE_HOURS)
"""What can stop a call on a whole day (the hours of the day are the worklist's choice)."""
RIGHT_PARTY_OUTCOMES = RESPONSE_OUTCOMES
DPD_BUCKETS: tuple[tuple[str, int], ...] = (
    ("<120", 0),
    ("120-179", 120),
    ("180-359", 180),
    ("360+", 360),
)
"""Days-past-due buckets (label, lower bound) for roll rates."""
SETTLED = "settled"


def _week(times: pd.Series) -> pd.Series:
    """Monday (UTC, midnight) of each time's week."""
    day = times.dt.tz_convert("UTC").dt.tz_localize(None).dt.normalize()
    return day - pd.to_timedelta(day.dt.weekday, unit="D")


def _window(frame: pd.DataFrame, column: str, start: Any, end: Any) -> pd.DataFrame:
    times = frame[column]
    keep = pd.Series(True, index=frame.index)
    if start is not None:
        keep &= times >= start
    if end is not None:
        keep &= times < end
    return frame[keep]


def collected_payments(tables: Mapping[str, pd.DataFrame]) -> pd.DataFrame:
    """Payments made after the account was placed (earlier ones went to the creditor)."""
    payments = tables["payments"]
    placed_at = payments["account_id"].map(tables["accounts"].set_index("account_id")["placed_at"])
    return payments[(payments["paid_at"] >= placed_at).to_numpy(bool)]


class _WeeklyEvents(NamedTuple):
    """The events the weekly KPIs count, each with its `week` (placements: `placed_week`)."""

    payments: pd.DataFrame
    contacts: pd.DataFrame
    made: pd.DataFrame
    """Promises by the week they were made."""
    due: pd.DataFrame
    """Promises by the week they fell due."""
    placed: pd.DataFrame
    """Accounts with their placement week and days from placement to the first payment."""
    forgiven: pd.DataFrame
    """Accounts with account events (`account_id`), the balance forgiven by each week's end
    (one column per week)."""


def _dated_events(
    tables: Mapping[str, pd.DataFrame],
    collected: pd.DataFrame,
    costs: Mapping[str, float],
    start: pd.Timestamp | None,
    end: pd.Timestamp | None,
) -> tuple[pd.DataFrame, pd.DataFrame, pd.DataFrame, pd.DataFrame]:
    """Collected payments, contacts (with their cost and whether they reached the debtor) and
    promises made and due between `start` and `end`, each with its week."""
    payments = _window(collected, "paid_at", start, end)
    payments = payments.assign(week=_week(payments["paid_at"]))
    contacts = _window(tables["contacts"], "attempted_at", start, end)
    contacts = contacts.assign(
        week=_week(contacts["attempted_at"]),
        cost=contacts["channel"].astype(str).map(costs).fillna(0.0).astype(float),
        right_party=contacts["outcome"].astype(str).isin(RIGHT_PARTY_OUTCOMES),
    )
    promises = tables["promises"]
    made = _window(promises, "made_at", start, end)
    made = made.assign(week=_week(made["made_at"]))
    due = _window(promises, "due_at", start, end)
    due = due.assign(week=_week(due["due_at"]))
    return payments, contacts, made, due


def _placement_cohorts(accounts: pd.DataFrame, collected: pd.DataFrame) -> pd.DataFrame:
    """Accounts with their placement week and the days from placement to the first payment
    collected (whatever the KPI window)."""
    placed = accounts.assign(placed_week=_week(accounts["placed_at"]))
    first_paid = collected.groupby("account_id", observed=True)["paid_at"].min()
    return placed.assign(
        days_to_first=(placed["account_id"].map(first_paid) - placed["placed_at"]).dt.days
    )


def forgiven_by_week(events: pd.DataFrame | None, weeks: pd.DatetimeIndex) -> pd.DataFrame:
    """Balance forgiven by settlements by each week's end (one column per week; a reopening
    voids earlier settlements), for the accounts that have account events."""
    if events is None or not len(events):
        return pd.DataFrame({"account_id": pd.Series(dtype=object)})
    ids = pd.Series(pd.unique(events["account_id"]))
    columns = {
        week: account_status(events, ids, (week + pd.Timedelta(days=7)).tz_localize("UTC"))[
            "amount_forgiven"
        ].to_numpy()
        for week in weeks
    }
    return pd.DataFrame({"account_id": ids.to_numpy(), **columns})


def _in_segment(frame: pd.DataFrame, segment_of: pd.Series, segment: str) -> pd.DataFrame:
    """The rows of one segment's accounts (every row for `all`)."""
    if segment == "all":
        return frame
    return frame[frame["account_id"].map(segment_of).to_numpy() == segment]


def _segment_totals(events: _WeeklyEvents) -> dict[str, pd.Series]:
    """Per week totals of one segment's events (days to first payment per placement week)."""
    payments, contacts, due = events.payments, events.contacts, events.due
    known_due = due[due["kept"].notna()]
    return {
        "collected": payments.groupby("week", observed=True)["amount"].sum(),
        "payment_count": payments.groupby("week", observed=True)["amount"].size(),
        "attempts": contacts.groupby("week", observed=True).size(),
        "reached": contacts.groupby("week", observed=True)["right_party"].sum(),
        "cost": contacts.groupby("week", observed=True)["cost"].sum(),
        "promised": events.made.groupby("week", observed=True).size(),
        "kept": known_due.groupby("week", observed=True)["kept"].agg(
            lambda k: float(np.mean(k.astype(bool)))
        ),
        "cohort_days": events.placed.groupby("placed_week", observed=True)["days_to_first"].mean(),
    }


def _week_row(
    week: pd.Timestamp,
    segment: str,
    totals: Mapping[str, pd.Series],
    placed: pd.DataFrame,
    forgiven_by_account: pd.DataFrame,
) -> dict[str, Any]:
    """The KPIs of one segment in one week."""
    week_end = week + pd.Timedelta(days=7)
    balance = placed.loc[
        placed["placed_at"].dt.tz_convert("UTC").dt.tz_localize(None) < week_end,
        "original_balance",
    ].sum()
    forgiven = float(forgiven_by_account[week].sum()) if week in forgiven_by_account else 0.0
    owed = balance - forgiven
    collected, payment_count = totals["collected"], totals["payment_count"]
    cost, promised = totals["cost"], totals["promised"]
    amount = float(collected.get(week, 0.0))
    contacts_reached = float(totals["reached"].get(week, 0))
    return {
        "week": week.date(),
        "segment": segment,
        "placed_balance": float(balance),
        "collected": amount,
        "collection_rate": amount / balance if balance else np.nan,
        "forgiven": forgiven,
        "collection_rate_net_of_forgiven": amount / owed if owed > 0 else np.nan,
        "payments": int(payment_count.get(week, 0)),
        "average_payment": amount / payment_count[week] if payment_count.get(week, 0) else np.nan,
        "attempts": int(totals["attempts"].get(week, 0)),
        "right_party_contacts": int(contacts_reached),
        "promises": int(promised.get(week, 0)),
        "promise_rate": promised.get(week, 0) / contacts_reached if contacts_reached else np.nan,
        "kept_rate": float(totals["kept"].get(week, np.nan)),
        "days_to_first_payment": float(totals["cohort_days"].get(week, np.nan)),
        "contact_cost": float(cost.get(week, 0.0)),
        "cost_per_amount_collected": float(cost.get(week, 0.0)) / amount if amount else np.nan,
    }


def weekly_kpis(
    tables: Mapping[str, pd.DataFrame],
    costs: Mapping[str, float],
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> pd.DataFrame:
    """One row per (week, segment), plus `segment == "all"`: the KPIs of the module
    docstring except the per-channel ones (see `channel_kpis`)."""
    accounts = tables["accounts"][["account_id", "product", "original_balance", "placed_at"]]
    segment_of = accounts.set_index("account_id")["product"].astype(str)
    collected_all = collected_payments(tables)
    payments, contacts, made, due = _dated_events(tables, collected_all, costs, start, end)
    weeks = pd.DatetimeIndex(
        sorted(set(payments["week"]) | set(contacts["week"]) | set(made["week"]))
    )
    if not len(weeks):
        return pd.DataFrame()
    events = _WeeklyEvents(
        payments,
        contacts,
        made,
        due,
        _placement_cohorts(accounts, collected_all),
        forgiven_by_week(tables.get("account_events"), weeks),
    )
    rows = []
    for segment in ["all", *sorted(segment_of.unique())]:
        mine = _WeeklyEvents(*(_in_segment(frame, segment_of, segment) for frame in events))
        totals = _segment_totals(mine)
        rows += [_week_row(week, segment, totals, mine.placed, mine.forgiven) for week in weeks]
    return pd.DataFrame(rows)


def channel_kpis(
    contacts: pd.DataFrame, start: pd.Timestamp | None = None, end: pd.Timestamp | None = None
) -> pd.DataFrame:
    """Right-party-contact rate per week and channel."""
    frame = _window(contacts, "attempted_at", start, end)
    frame = frame.assign(
        week=_week(frame["attempted_at"]).dt.date,
        channel=frame["channel"].astype(str),
        right_party=frame["outcome"].astype(str).isin(RIGHT_PARTY_OUTCOMES),
    )
    table = frame.groupby(["week", "channel"], observed=True).agg(
        attempts=("right_party", "size"), right_party_contacts=("right_party", "sum")
    )
    table["rpc_rate"] = table["right_party_contacts"] / table["attempts"]
    return table.reset_index()


def _buckets(days: np.ndarray) -> np.ndarray:
    labels = np.array([label for label, _ in DPD_BUCKETS], dtype=object)
    bounds = np.array([bound for _, bound in DPD_BUCKETS])
    return labels[np.searchsorted(bounds, days, side="right") - 1]


def account_states(tables: Mapping[str, pd.DataFrame], at: pd.Timestamp) -> pd.Series:
    """Each placed account's state at `at`: its days-past-due bucket, or settled once its
    payments and the balance forgiven by a settlement cover the balance placed (accounts not
    yet placed are left out)."""
    accounts = tables["accounts"]
    placed = accounts[accounts["placed_at"] <= at]
    payments = tables["payments"]
    paid = payments[payments["paid_at"] < at].groupby("account_id", observed=True)["amount"].sum()
    forgiven = account_status(tables.get("account_events"), placed["account_id"], at)
    owed = placed["original_balance"].to_numpy() - placed["account_id"].map(paid).fillna(0.0)
    owed = owed - forgiven["amount_forgiven"].to_numpy()
    days = (at - placed["delinquent_since"]).dt.days.to_numpy()
    states = np.where(owed.to_numpy() <= 0.005, SETTLED, _buckets(days))
    return pd.Series(states, index=placed["account_id"].to_numpy())


def roll_rates(
    tables: Mapping[str, pd.DataFrame], weeks: list[pd.Timestamp], horizon_weeks: int = 4
) -> pd.DataFrame:
    """Share of accounts in each bucket at a week's start found in each state
    `horizon_weeks` later (rows: from-bucket; one row per week and from-bucket)."""
    rows = []
    for week in weeks:
        start = pd.Timestamp(week).tz_localize("UTC")
        later = start + pd.Timedelta(weeks=horizon_weeks)
        before, after = account_states(tables, start), account_states(tables, later)
        open_before = before[before != SETTLED]
        moved = pd.crosstab(open_before, after.reindex(open_before.index), normalize="index")
        order = [label for label, _ in DPD_BUCKETS] + [SETTLED]
        moved = moved.reindex(index=[b for b in order if b in moved.index])
        moved = moved.reindex(columns=order, fill_value=0.0)
        for bucket, shares in moved.iterrows():
            rows.append(
                {
                    "week": pd.Timestamp(week).date(),
                    "from": bucket,
                    "accounts": int((open_before == bucket).sum()),
                    **{f"to {state}": float(v) for state, v in shares.items()},
                }
            )
    return pd.DataFrame(rows)


def blocked_shares(
    tables: Mapping[str, pd.DataFrame], weeks: list[pd.Timestamp], rules: ContactRules
) -> pd.DataFrame:
    """Per week: share of open accounts that may not be called at the week's end, by the
    worklist's own rules, and the reasons' mix."""
    debtor_of = tables["accounts"].set_index("account_id")["debtor_id"]
    debtors = tables["debtors"]
    zone_of_debtor = debtors.set_index("debtor_id")["timezone"].astype(str)
    region_of_debtor = debtors.set_index("debtor_id")["region"].astype(str)
    rows = []
    for week in weeks:
        day = (pd.Timestamp(week) + pd.Timedelta(days=7)).date()
        states = account_states(tables, pd.Timestamp(day).tz_localize("UTC"))
        open_ids = states.index[states != SETTLED]
        debtor = debtor_of.loc[open_ids]
        zones = pd.Series(debtor.map(zone_of_debtor).to_numpy(), index=open_ids)
        histories = contact_histories(tables["contacts"], zones, day, rules.lookback_days())
        kinds = dict.fromkeys(CALL_BLOCKS, 0)
        blocked = 0
        regions = debtor.map(region_of_debtor)
        for account_id, history in histories.items():
            limits = rules.for_region(regions.get(account_id))
            channels, whole = channel_blocks(history, day, limits)
            reason = whole or channels.get("call")
            if not reason:
                continue
            blocked += 1
            kinds[reason.kind] += 1
        total = len(open_ids)
        rows.append(
            {
                "week": pd.Timestamp(week).date(),
                "open_accounts": total,
                "blocked_share": blocked / total if total else np.nan,
                **{f"blocked: {k}": v / total if total else np.nan for k, v in kinds.items()},
            }
        )
    return pd.DataFrame(rows)


def collection_kpis(
    tables: Mapping[str, pd.DataFrame],
    costs: Mapping[str, float],
    rules: ContactRules,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """Every KPI table for the weeks between `start` and `end` (default: from the first
    placement to the end of the data)."""
    if start is None:
        start = _week(tables["accounts"]["placed_at"]).min().tz_localize("UTC")
    weekly = weekly_kpis(tables, costs, start, end)
    weeks = sorted({pd.Timestamp(w) for w in weekly["week"]}) if len(weekly) else []
    data_end = tables["payments"]["paid_at"].max()
    roll_weeks = [
        w for w in weeks if pd.Timestamp(w).tz_localize("UTC") + pd.Timedelta(weeks=4) <= data_end
    ]
    return {
        "weekly": weekly,
        "channels": channel_kpis(tables["contacts"], start, end),
        "roll_rates": roll_rates(tables, roll_weeks[::4] or roll_weeks[:1]),
        "blocked": blocked_shares(tables, weeks, rules),
    }


def kpi_figures(kpis: Mapping[str, pd.DataFrame]) -> dict[str, Any]:
    """The KPIs over time, one matplotlib figure each (named `kpi_...`)."""
    figures: dict[str, Any] = {}
    weekly, channels, blocked = kpis["weekly"], kpis["channels"], kpis["blocked"]
    if len(weekly):
        figures["kpi_collection_rate"] = lines_figure(
            weekly,
            "week",
            "collection_rate",
            "segment",
            "Collection rate per week (gross)",
            "collected / placed balance",
        )
        figures["kpi_collection_rate_net"] = lines_figure(
            weekly,
            "week",
            "collection_rate_net_of_forgiven",
            "segment",
            "Collection rate per week, net of forgiveness",
            "collected / (placed - forgiven)",
        )
        everyone = weekly[weekly["segment"] == "all"]
        rates = everyone.melt(
            id_vars="week", value_vars=["promise_rate", "kept_rate"], var_name="rate"
        )
        figures["kpi_promises"] = lines_figure(
            rates, "week", "value", "rate", "Promises to pay (all segments)", "share"
        )
        figures["kpi_cost"] = lines_figure(
            weekly,
            "week",
            "cost_per_amount_collected",
            "segment",
            "Contact cost per amount collected",
            "cost / collected",
        )
    if len(channels):
        figures["kpi_right_party"] = lines_figure(
            channels,
            "week",
            "rpc_rate",
            "channel",
            "Right-party-contact rate per channel",
            "reached / attempts",
        )
    if len(blocked):
        shares = blocked.melt(
            id_vars="week",
            value_vars=[c for c in blocked.columns if c.startswith("blocked")],
            var_name="why",
        )
        figures["kpi_blocked"] = lines_figure(
            shares, "week", "value", "why", "Open accounts that may not be called", "share"
        )
    return figures


def portfolio_kpis(
    folder: Path,
    costs: Mapping[str, float],
    rules: ContactRules,
    start: pd.Timestamp | None = None,
    end: pd.Timestamp | None = None,
) -> dict[str, pd.DataFrame]:
    """`collection_kpis` of a portfolio folder (`rules`: the worklist's `ContactRules`)."""
    return collection_kpis(read_portfolio(Path(folder)), costs, rules, start, end)


def write_kpis(kpis: Mapping[str, pd.DataFrame], out: Path) -> list[Path]:
    """Each KPI table as CSV and each figure as PNG, into `out`."""
    import matplotlib.pyplot as plt

    out.mkdir(parents=True, exist_ok=True)
    written = []
    for name, table in kpis.items():
        path = out / f"{name}.csv"
        table.to_csv(path, index=False)
        written.append(path)
    for name, figure in kpi_figures(kpis).items():
        path = out / f"{name}.png"
        figure.savefig(path, dpi=96, bbox_inches="tight")
        plt.close(figure)
        written.append(path)
    return written
