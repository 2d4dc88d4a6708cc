"""The scoring service's state: champion models from the MLflow registry, the Feast online
store, and the account -> debtor map; and scoring itself.

Models are loaded by alias through MLflow (the objects carry their own preprocessing); serving
never imports the training code itself.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from data_contracts.settings import ServingSettings
from features.history import HOUR_BANDS
from pipelines.registry import NEXT_BEST_ACTION_MODEL, PROPENSITY_MODEL, load_model


class ServiceNotReady(RuntimeError):
    """Models or the online store are not loaded."""


@dataclass
class LoadedModel:
    name: str
    alias: str
    version: str
    run_id: str | None
    model: Any

    @property
    def feature_service(self) -> str | None:
        return getattr(self.model, "metadata_", {}).get("feature_service")


def load_registered(name: str, alias: str) -> LoadedModel:
    """A model version by alias from the registry (tracking URI already set)."""
    model, version = load_model(name, alias)
    return LoadedModel(name, alias, str(version.version), version.run_id, model)


def _window(band: str) -> str:
    start, end = HOUR_BANDS[band]
    return f"{start:02d}:00-{end:02d}:00"


def _number(value: Any) -> float | None:
    if value is None:
        return None
    number = float(value)
    return None if np.isnan(number) else number


def _whole(value: Any) -> int | None:
    number = _number(value)
    return None if number is None else int(number)


def _flag(values: pd.Series) -> np.ndarray:
    """1/0 flags (missing counts as 0) as a boolean array."""
    return np.asarray(pd.to_numeric(values, errors="coerce").fillna(0).to_numpy() > 0)


@dataclass
class ScoringService:
    settings: ServingSettings
    propensity: LoadedModel | None = None
    actions: LoadedModel | None = None
    online: Any = None
    debtor_of: pd.Series | None = None
    zone_of: pd.Series | None = None
    region_of: pd.Series | None = None
    history: dict[str, pd.DataFrame] = field(default_factory=dict)
    rules: Any = None
    refused: dict[str, set[str]] = field(default_factory=dict)
    """Versions that failed to load or to answer a smoke prediction (not retried)."""
    errors: list[str] = field(default_factory=list)

    @classmethod
    def load(cls, settings: ServingSettings, tracking_uri: str | None = None) -> ScoringService:
        """Load champions and the online store; what fails is recorded, not raised, so the
        service can start, answer /health and report what is missing on /ready."""
        from pipelines.feature_store import OnlineFeatures
        from pipelines.registry import open_registry

        service = cls(settings)
        open_registry(tracking_uri)
        for attribute, name in (
            ("propensity", PROPENSITY_MODEL),
            ("actions", NEXT_BEST_ACTION_MODEL),
        ):
            try:
                setattr(service, attribute, load_registered(name, settings.model_alias))
            except Exception as error:  # the registry raises its own types
                service.errors.append(f"{name}@{settings.model_alias}: {type(error).__name__}")
        folder = Path(settings.portfolio)
        try:
            service.online = OnlineFeatures(folder)
            accounts = pd.read_parquet(
                folder / "accounts.parquet", columns=["account_id", "debtor_id"]
            )
            debtors = pd.read_parquet(
                folder / "debtors.parquet", columns=["debtor_id", "timezone", "region"]
            )
            service.debtor_of = accounts.set_index("account_id")["debtor_id"]
            service.zone_of = debtors.set_index("debtor_id")["timezone"].astype(str)
            service.region_of = debtors.set_index("debtor_id")["region"].astype(str)
            service.history = {
                "contacts": pd.read_parquet(
                    folder / "contacts.parquet",
                    columns=["account_id", "channel", "direction", "attempted_at", "outcome"],
                ),
                "promises": pd.read_parquet(
                    folder / "promises.parquet",
                    columns=["account_id", "due_at", "amount", "kept", "offer_id"],
                ),
                "offers": pd.read_parquet(folder / "offers.parquet", columns=["offer_id", "kind"]),
            }
        except Exception as error:
            service.errors.append(f"online store of {folder}: {type(error).__name__}")
        try:
            from serving.worklist import load_rules

            service.rules = load_rules(Path(settings.contact_rules))
        except Exception as error:
            service.errors.append(f"contact rules {settings.contact_rules}: {type(error).__name__}")
        return service

    @property
    def ready(self) -> bool:
        return self.propensity is not None and self.online is not None and self.rules is not None

    def versions(self) -> dict[str, str]:
        return {m.name: m.version for m in (self.propensity, self.actions) if m is not None}

    def features_for(self, account_ids: Sequence[int]) -> tuple[pd.DataFrame, np.ndarray]:
        """Online features of the accounts, and which of them the store knows."""
        assert self.debtor_of is not None
        debtors = self.debtor_of.reindex(list(account_ids))
        known = debtors.notna().to_numpy()
        rows = [
            {"account_id": int(a), "debtor_id": int(d) if k else -1}
            for a, d, k in zip(account_ids, debtors.to_numpy(), known, strict=True)
        ]
        values = self.online.get(rows)
        frame = pd.DataFrame(values)
        names = self.propensity.model.feature_names_ if self.propensity else []
        present = frame[names].notna().any(axis=1).to_numpy() if names else known
        return frame, known & present

    def local_weekday(self, account_ids: Sequence[int]) -> np.ndarray:
        """Today's weekday (0 = Monday) in each account's debtor's time zone."""
        now = pd.Timestamp.now(tz="UTC")
        if self.debtor_of is None or self.zone_of is None:
            return np.full(len(account_ids), now.weekday())
        zones = self.debtor_of.reindex(list(account_ids)).map(self.zone_of)
        return np.array(
            [now.tz_convert(z).weekday() if isinstance(z, str) else now.weekday() for z in zones]
        )

    def score_frame(
        self, account_ids: Sequence[int], frame: pd.DataFrame, with_reasons: bool
    ) -> list[dict[str, Any]]:
        """Score rows whose features are known: probability, amount, best action, reasons."""
        if self.propensity is None:
            raise ServiceNotReady("no propensity model loaded")
        model = self.propensity.model
        predicted = model.predict_frame(frame)
        reasons = model.reasons(frame, self.settings.reasons) if with_reasons else None
        best = None
        if self.actions is not None:
            action_model = self.actions.model
            blocked = {
                channel: _flag(frame[f"opted_out_{channel}"])
                for channel in ("call", "sms", "email")
                if f"opted_out_{channel}" in frame
            }
            best = action_model.best_actions(frame, self.local_weekday(account_ids), blocked)
        items = []
        for position, account_id in enumerate(account_ids):
            item: dict[str, Any] = {
                "account_id": int(account_id),
                "status": "scored",
                "p_payment_30d": float(predicted.iloc[position, 0]),
                "expected_amount_30d": _number(predicted.iloc[position, 1]),
                "reasons": reasons[position] if reasons is not None else [],
            }
            if best is not None:
                row = best.iloc[position]
                item["best_action"] = {
                    "channel": row["channel"],
                    "hour_band": row["hour_band"],
                    "local_window": _window(row["hour_band"]),
                    "offer": row["offer"],
                    "discount_pct": _number(row["discount_pct"]),
                    "installments": _whole(row["installments"]),
                    "p_contact": float(row["p_contact"]),
                    "expected_net": float(row["expected_net"]),
                }
            items.append(item)
        return items

    def score_ids(self, account_ids: Sequence[int], with_reasons: bool) -> list[dict[str, Any]]:
        """Score accounts by id; unknown ones are reported per item."""
        if not self.ready:
            raise ServiceNotReady("; ".join(self.errors) or "not loaded")
        frame, known = self.features_for(account_ids)
        scored = (
            self.score_frame(
                [a for a, k in zip(account_ids, known, strict=True) if k],
                frame[known].reset_index(drop=True),
                with_reasons,
            )
            if known.any()
            else []
        )
        results, it = [], iter(scored)
        for account_id, is_known in zip(account_ids, known, strict=True):
            if is_known:
                results.append(next(it))
            else:
                results.append(
                    {
                        "account_id": int(account_id),
                        "status": "unknown_account",
                        "detail": "no features for this account in the online store",
                    }
                )
        return results

    def score_payloads(self, payloads: Sequence[Any], with_reasons: bool) -> list[dict[str, Any]]:
        """Score full feature payloads (no store lookup)."""
        if self.propensity is None:
            raise ServiceNotReady("; ".join(self.errors) or "not loaded")
        names = self.propensity.model.feature_names_
        frame = pd.DataFrame([{name: p.features.get(name) for name in names} for p in payloads])
        ids = [p.account_id for p in payloads]
        return self.score_frame(ids, frame, with_reasons)

    def worklist(
        self, day: Any, capacity: dict[str, int], account_ids: Sequence[int] | None
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
        """The day's compliant worklist over the given accounts (default: every account)."""
        from serving.worklist import build_worklist, contact_histories, promise_follow_ups

        if not self.ready or self.actions is None:
            raise ServiceNotReady("; ".join(self.errors) or "not loaded")
        assert self.debtor_of is not None and self.zone_of is not None
        assert self.region_of is not None
        # each account once, in the order asked
        ids = list(dict.fromkeys(account_ids if account_ids is not None else self.debtor_of.index))
        if not ids:
            empty = pd.DataFrame(columns=["account_id", "reason"])
            zero = {"requested": 0, "unknown_or_settled": 0, "considered": 0}
            return pd.DataFrame(), empty, {**zero, "scheduled": 0, "blocked": 0}
        frame, known = self.features_for(ids)
        usable = known & _flag(frame["current_balance"])
        frame = frame[usable].reset_index(drop=True)
        scored_ids = frame["account_id"].astype(int).to_numpy()
        counts = {
            "requested": len(ids),
            "unknown_or_settled": int((~usable).sum()),
            "considered": len(scored_ids),
            "scheduled": 0,
            "blocked": 0,
        }
        if not len(frame):  # nothing known and owing: an empty worklist, not an error
            empty = pd.DataFrame(columns=["account_id", "reason"])
            return pd.DataFrame(), empty, counts
        values = self.actions.model.action_values(frame, day.weekday())
        best = values.loc[values.groupby(["row", "channel"])["expected_net"].idxmax()]
        candidates = best.assign(account_id=scored_ids[best["row"].to_numpy()])
        debtors = self.debtor_of.reindex(scored_ids)
        accounts = pd.DataFrame(
            {
                "account_id": scored_ids,
                "region": debtors.map(self.region_of).to_numpy(),
                "timezone": debtors.map(self.zone_of).to_numpy(),
            }
        )
        zone_of_account = pd.Series(accounts["timezone"].to_numpy(), index=scored_ids)
        histories = contact_histories(self.history["contacts"], zone_of_account, day)
        follow_ups = promise_follow_ups(
            self.history["promises"], self.history["offers"], zone_of_account, day
        )
        items, excluded = build_worklist(
            candidates, accounts, histories, follow_ups, self.rules, day, capacity
        )
        counts.update(scheduled=len(items), blocked=len(excluded))
        return items, excluded, counts

    def smoke_rows(self) -> pd.DataFrame:
        """A few accounts the online store knows, to try a new model on before it serves."""
        if self.debtor_of is None or self.online is None:
            raise ServiceNotReady("no online store to draw smoke-test rows from")
        frame, known = self.features_for(list(self.debtor_of.index[:50]))
        rows = frame[known].head(5).reset_index(drop=True)
        if not len(rows):
            raise ServiceNotReady("no account with features for a smoke test")
        return rows

    def smoke_test(self, attribute: str, candidate: LoadedModel) -> None:
        """Raise unless the candidate gives sane answers on real rows."""
        rows = self.smoke_rows()
        if attribute == "propensity":
            predicted = candidate.model.predict_frame(rows).to_numpy(dtype=float)
            probability = predicted[:, 0]
            if predicted.shape[0] != len(rows) or not np.all(
                (probability >= 0) & (probability <= 1)
            ):
                raise ValueError("smoke prediction: probabilities outside [0, 1]")
        else:
            best = candidate.model.best_actions(rows, 0)
            if len(best) != len(rows) or not np.isfinite(best["expected_net"]).all():
                raise ValueError("smoke prediction: no finite action values")

    def refresh(self) -> list[str]:
        """Load any new version holding the alias, smoke-test it, then swap it in; a version
        that fails is refused (and not retried) while the current one keeps serving.
        Requests in flight keep the model object they started with."""
        from mlflow.tracking import MlflowClient

        messages = []
        alias = self.settings.model_alias
        models = (("propensity", PROPENSITY_MODEL), ("actions", NEXT_BEST_ACTION_MODEL))
        for attribute, name in models:
            current = getattr(self, attribute)
            try:
                version = str(MlflowClient().get_model_version_by_alias(name, alias).version)
            except Exception as error:
                messages.append(f"unreachable {name}@{alias} ({type(error).__name__})")
                continue
            if current is not None and current.version == version:
                continue
            if version in self.refused.get(name, set()):
                continue
            try:
                candidate = load_registered(name, alias)
                if candidate.version != version:
                    continue  # the alias moved again while loading: next round
                self.smoke_test(attribute, candidate)
            except Exception as error:
                self.refused.setdefault(name, set()).add(version)
                messages.append(f"refused {name} v{version}: {type(error).__name__}: {error}")
                continue
            setattr(self, attribute, candidate)
            previous = "none" if current is None else f"v{current.version}"
            messages.append(f"swapped {name} {previous} -> v{version}")
        return messages
