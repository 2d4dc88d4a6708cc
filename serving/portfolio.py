"""The portfolio as the scoring service holds it in memory: every account's latest features,
read in bulk from the Feast online store, and the models' encoded matrices over them.

Scoring one account is then a row lookup and LightGBM on a numpy row, and a worklist over the
whole portfolio needs no per-account store reads. The copy is re-read when a new online store
generation is published (a new materialization); requests in flight keep the copy they
started with.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from data_contracts.coerce import coerce_id
from data_contracts.ids import lookup
from data_contracts.vocabulary import OPT_OUT_CHANNELS
from features.events import account_status, closed_reasons
from pipelines.feature_store import OnlineGeneration, OnlineSnapshot, published_generation

if TYPE_CHECKING:
    from serving.prepared import ReasonTable


def flags(values: pd.Series) -> np.ndarray:
    """1/0 flags (missing counts as 0) as a boolean array."""
    return np.asarray(pd.to_numeric(values, errors="coerce").fillna(0).to_numpy() > 0)


@dataclass
class PortfolioFeatures:
    """Raw feature values of every account (index: account id) and lookups over them."""

    frame: pd.DataFrame
    folder: Path
    """The portfolio folder whose online store the values were read from."""
    stamp: str
    """The online store generation read (unique per materialization)."""
    services: tuple[str, ...]
    timezone: np.ndarray
    """Each row's debtor time zone (None when unknown)."""
    region: np.ndarray
    """Each row's debtor region (jurisdiction), None when unknown."""
    has_features: np.ndarray
    """Whether the store holds any value for the row."""
    owing: np.ndarray
    """Whether the row's current balance is positive (settled accounts are not worked)."""
    opted_out: dict[str, np.ndarray]
    """Channel -> rows whose debtor opted out of it (as the features record it)."""
    reasons: dict[tuple[str, int], ReasonTable] = field(default_factory=dict)
    """(Model version, reasons per direction) -> the reason codes at hand for this copy."""
    _encoded: dict[Any, Any] = field(default_factory=dict)

    def current_stamp(self) -> str | None:
        """The generation published now: different from `stamp` after a new
        materialization."""
        generation = published_generation(self.folder)
        return generation.name if generation is not None else None

    def positions(self, account_ids: Sequence[str] | np.ndarray) -> np.ndarray:
        """Row of each account id (-1 when the store does not know it); ids are compared as
        text, exactly."""
        wanted = np.asarray(account_ids, dtype=object)
        return np.asarray(self.frame.index.get_indexer(pd.Index(wanted, dtype=object)))

    def known(self, positions: np.ndarray) -> np.ndarray:
        return (positions >= 0) & self.has_features[np.maximum(positions, 0)]

    def encoded(self, key: Any, encode: Callable[[pd.DataFrame], Any]) -> Any:
        """`encode(frame)` computed once per key (a model version) for this copy."""
        if key not in self._encoded:
            self._encoded[key] = encode(self.frame)
        return self._encoded[key]

    def local_weekdays(self, positions: np.ndarray, now: pd.Timestamp) -> np.ndarray:
        """Today's weekday (0 = Monday) in each row's time zone (UTC when unknown)."""
        zones = self.timezone[positions]
        weekdays = np.full(len(positions), now.weekday())
        for zone in {z for z in zones if isinstance(z, str)}:
            weekdays[zones == zone] = now.tz_convert(zone).weekday()
        return weekdays


def read_account_ids(folder: Path) -> pd.DataFrame:
    """The portfolio's `account_id` and `debtor_id` as plain text (integers in an older
    portfolio read as their decimal text, as validation reads them)."""
    accounts = pd.read_parquet(folder / "accounts.parquet", columns=["account_id", "debtor_id"])
    return pd.DataFrame(
        {name: coerce_id(accounts[name])[0].astype(object) for name in accounts.columns}
    )


def read_feature_frame(
    folder: Path, services: Sequence[str], generation: OnlineGeneration | None = None
) -> tuple[pd.DataFrame, str]:
    """Every account's latest values of the feature services from one online store generation
    (default: the one published now), indexed by account id, with the debtor's values joined;
    and the generation's name."""
    accounts = read_account_ids(folder)
    ids = {
        "account_id": accounts["account_id"].to_numpy(),
        "debtor_id": accounts["debtor_id"].unique(),
    }
    wanted = list(dict.fromkeys(services))
    if not wanted:
        raise ValueError("no feature service to read")
    parts: dict[str, list[pd.DataFrame]] = {}
    with ExitStack() as opened:  # every service from one generation, closed after reading
        first = opened.enter_context(OnlineSnapshot(folder, wanted[0], generation))
        snapshots = [first] + [
            opened.enter_context(OnlineSnapshot(folder, service, first.generation))
            for service in wanted[1:]
        ]
        for snapshot in snapshots:
            for key, frame in snapshot.read(ids).items():
                parts.setdefault(key, []).append(frame)
    merged = {}
    for key, frames in parts.items():
        joined = pd.concat(frames, axis=1)
        merged[key] = joined.loc[:, ~joined.columns.duplicated()]
    frame = accounts.set_index("account_id")
    by_account = merged.get("account_id")
    if by_account is not None:
        frame = frame.join(by_account, how="left")
    by_debtor = merged.get("debtor_id")
    if by_debtor is not None:
        frame = frame.join(by_debtor, on="debtor_id", how="left", rsuffix="_debtor")
    return frame, first.stamp()


def portfolio_from_frame(
    folder: Path,
    frame: pd.DataFrame,
    stamp: str,
    services: Sequence[str],
    model_features: Sequence[str],
) -> PortfolioFeatures:
    """The in-memory copy over a frame of `read_feature_frame` (read now, or prepared)."""
    debtors = pd.read_parquet(
        folder / "debtors.parquet", columns=["debtor_id", "timezone", "region"]
    )
    names = [name for name in model_features if name in frame.columns]
    has_features = frame[names].notna().any(axis=1).to_numpy() if names else np.zeros(len(frame))
    balance = (
        pd.to_numeric(frame["current_balance"], errors="coerce").fillna(0).to_numpy()
        if "current_balance" in frame
        else np.zeros(len(frame))
    )
    text_ids = coerce_id(debtors["debtor_id"])[0].astype(object)
    debtor = debtors.assign(debtor_id=text_ids).set_index("debtor_id")
    zone = lookup(frame["debtor_id"], debtor["timezone"].astype(object))
    region = lookup(frame["debtor_id"], debtor["region"].astype(object))
    opted_out = {
        channel: flags(frame[f"opted_out_{channel}"])
        for channel in OPT_OUT_CHANNELS
        if f"opted_out_{channel}" in frame
    }
    return PortfolioFeatures(
        frame=frame,
        folder=Path(folder),
        stamp=stamp,
        services=tuple(services),
        timezone=zone.to_numpy(object),
        region=region.to_numpy(object),
        has_features=np.asarray(has_features, bool),
        owing=balance > 0,
        opted_out=opted_out,
    )


ACCOUNT_EVENT_COLUMNS = ["account_id", "occurred_at", "kind", "amount_forgiven"]


def read_closed_accounts(folder: Path, account_ids: pd.Index, now: pd.Timestamp) -> pd.Series:
    """Account id -> why it is closed (`closed: settled 2026-01-04`), from the portfolio's
    account events before `now`; empty when the portfolio has no `account_events.parquet`.

    Read from the contract table rather than the feature snapshot, which may be a week old:
    an account settled yesterday is not worked today."""
    path = Path(folder) / "account_events.parquet"
    if not path.exists():
        return pd.Series(dtype=object)
    events = pd.read_parquet(path, columns=ACCOUNT_EVENT_COLUMNS)
    events = events.assign(account_id=coerce_id(events["account_id"])[0].astype(object))
    return closed_reasons(account_status(events, account_ids.to_series(), now))


def read_portfolio(
    folder: Path, services: Sequence[str], model_features: Sequence[str]
) -> PortfolioFeatures:
    """Every account's latest values of the feature services from the online store."""
    frame, stamp = read_feature_frame(folder, services)
    return portfolio_from_frame(folder, frame, stamp, services, model_features)
