"""Breaches of the contact rules in a contact history (pure, vectorised).

Validation reports them as compliance warnings, not errors: the contacts happened, and a
manager needs to know the history holds breaches. Two rules of `contact_rules.yaml` are
checked, each with the limits of the debtor's jurisdiction (its region, where the rules name
it; the defaults otherwise):

- `outside_contact_hours`: an outbound call, SMS or email before `earliest_hour`:00 or after
  `latest_hour`:00 in the debtor's local time (IANA zone, daylight saving included). Letters
  are left out: the time a letter is mailed is not when it reaches the debtor.
- `call_limit_exceeded`: an outbound call attempt that makes more than `max_calls_7d` call
  attempts to the same debtor within 7 consecutive local calendar days (that day and the 6
  before it).

Each function works on whole columns: contacts are grouped by time zone once (a few hundred
zones for tens of millions of contacts), and the 7-day counts come from one sort and one
binary search.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from data_contracts.contact_rules import ContactRules

OUTSIDE_HOURS = "outside_contact_hours"
CALL_LIMIT = "call_limit_exceeded"
BREACH_RULES: dict[str, str] = {
    OUTSIDE_HOURS: "contacts outside the allowed local hours",
    CALL_LIMIT: "call attempts over the 7-day call limit",
}
"""Each rule checked, with what its rows are, for the people reading the warnings."""
DEFAULT_JURISDICTION = "default"
_DAY_BITS = 18  # a local day number fits in 18 bits (about 700 years) beside the debtor code


def local_times(times: pd.Series, zone_codes: np.ndarray, zones: pd.Index) -> np.ndarray:
    """Local wall-clock time (naive `datetime64[us]`) of each UTC time in its own zone.

    Args:
        times: UTC timestamps.
        zone_codes: Position of each row's zone in `zones`.
        zones: IANA zone names.
    """
    utc = pd.DatetimeIndex(times).tz_convert("UTC").as_unit("us")
    local = np.empty(len(utc), dtype="datetime64[us]")
    order = np.argsort(zone_codes, kind="stable")
    bounds = np.searchsorted(zone_codes[order], np.arange(len(zones) + 1))
    for code, zone in enumerate(zones):
        rows = order[bounds[code] : bounds[code + 1]]
        if len(rows):
            local[rows] = utc[rows].tz_convert(str(zone)).tz_localize(None).to_numpy()
    return local


def utc_naive(times: pd.Series) -> np.ndarray:
    """UTC times as naive `datetime64[us]` (numpy arrays of aware times are Python objects)."""
    return pd.DatetimeIndex(times).tz_convert("UTC").as_unit("us").tz_localize(None).to_numpy()


def _limits_per_region(regions: pd.Index, rules: ContactRules) -> pd.DataFrame:
    """Each region's limits and the jurisdiction they come from."""
    rows = []
    for region in regions:
        limits = rules.for_region(str(region))
        named = str(region) in rules.jurisdictions
        rows.append(
            {
                "earliest_hour": limits.earliest_hour,
                "latest_hour": limits.latest_hour,
                "max_calls_7d": limits.max_calls_7d,
                "jurisdiction": str(region) if named else DEFAULT_JURISDICTION,
            }
        )
    columns = ["earliest_hour", "latest_hour", "max_calls_7d", "jurisdiction"]
    return pd.DataFrame(rows, columns=columns)


def contact_rule_breaches(
    contacts: pd.DataFrame,
    accounts: pd.DataFrame,
    debtors: pd.DataFrame,
    rules: ContactRules,
) -> dict[str, pd.DataFrame]:
    """The contacts that broke each rule, with what the rule saw.

    Args:
        contacts: Valid contacts (`account_id`, `channel`, `direction`, `attempted_at`), with
            a `row` column: their row numbers in the input file.
        accounts: Valid accounts (`account_id`, `debtor_id`).
        debtors: Valid debtors (`debtor_id`, `timezone`, `region`).
        rules: The contact rules.

    Returns:
        Rule name -> the breaching contacts in row order, columns `row`, `local_time` (the
        debtor's wall-clock time), `jurisdiction`, `utc_offset` (of that zone at that moment)
        and for the call limit `calls_in_7_days`. Only rules with breaches appear.
    """
    outbound = (contacts["direction"] == "outbound").to_numpy(bool)
    channel = contacts["channel"]
    timed = outbound & channel.isin(["call", "sms", "email"]).to_numpy(bool)
    calls = outbound & (channel == "call").to_numpy(bool)
    if not timed.any():
        return {}
    frame = contacts[timed]
    debtor = pd.Index(accounts["account_id"]).get_indexer(frame["account_id"])
    debtor = pd.Index(debtors["debtor_id"]).get_indexer(accounts["debtor_id"].to_numpy()[debtor])
    # codes per debtor (a few per million contacts), then per contact by position
    zone_codes, zones = pd.factorize(debtors["timezone"])
    region_codes, regions = pd.factorize(debtors["region"])
    zone_codes, region_codes = zone_codes[debtor], region_codes[debtor]
    per_region = _limits_per_region(pd.Index(regions), rules)
    limits = {name: per_region[name].to_numpy()[region_codes] for name in per_region.columns}
    local = local_times(frame["attempted_at"], zone_codes, pd.Index(zones))
    seen = pd.DataFrame(
        {
            "row": frame["row"].to_numpy(),
            "local": local,
            "utc": utc_naive(frame["attempted_at"]),
            "jurisdiction": limits["jurisdiction"],
        }
    )
    breaches = {}
    seconds = (local - local.astype("datetime64[D]")).astype("timedelta64[s]").astype(np.int64)
    early = seconds < limits["earliest_hour"] * 3600
    late = seconds > limits["latest_hour"] * 3600
    if (early | late).any():
        breaches[OUTSIDE_HOURS] = _described(seen[early | late])
    is_call = calls[timed]
    counts = _calls_in_7_days(debtor[is_call], local[is_call], seen["utc"].to_numpy()[is_call])
    over = counts > limits["max_calls_7d"][is_call]
    if over.any():
        found = seen[is_call][over].assign(calls_in_7_days=counts[over])
        breaches[CALL_LIMIT] = _described(found)
    return breaches


def _calls_in_7_days(debtor: np.ndarray, local: np.ndarray, utc: np.ndarray) -> np.ndarray:
    """For each call, the debtor's calls in its local day and the 6 before, up to and
    including it (in time order), so the call that crosses the limit is the one counted."""
    order = np.lexsort((utc, debtor))
    day = local.astype("datetime64[D]").astype(np.int64) + (1 << (_DAY_BITS - 1))
    # one debtor's days follow its times (one zone per debtor): keys sort with the calls
    keys = (debtor.astype(np.int64) << _DAY_BITS) + day
    sorted_keys = keys[order]
    first = np.searchsorted(sorted_keys, sorted_keys - 6, side="left")
    counts = np.empty(len(keys), dtype=np.int64)
    counts[order] = np.arange(len(keys)) - first + 1
    return counts


def _described(found: pd.DataFrame) -> pd.DataFrame:
    """Breaching rows in row order, with the UTC offset of their local time."""
    found = found.sort_values("row", kind="stable").reset_index(drop=True)
    offset = found["local"] - found["utc"]
    return (
        found.drop(columns="utc").rename(columns={"local": "local_time"}).assign(utc_offset=offset)
    )


def local_time_text(local: pd.Timestamp, offset: pd.Timedelta) -> str:
    """`2025-10-31T21:30:00-04:00`: a local time with its UTC offset, as ISO 8601."""
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    hours, rest = divmod(abs(minutes), 60)
    return f"{local:%Y-%m-%dT%H:%M:%S}{sign}{hours:02d}:{rest:02d}"
