"""The scoring service's state: champion models from the MLflow registry, the Feast online
store, and the account -> debtor map; and scoring itself.

Models are loaded by alias through MLflow (the objects carry their own preprocessing); serving
never imports the training code itself.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Generic, TypeVar

import numpy as np
import pandas as pd

from data_contracts.coerce import coerce_ids
from data_contracts.contact_rules import ContactRules, RulesError, load_rules
from data_contracts.schemas import id_columns
from data_contracts.settings import ServingSettings
from data_contracts.vocabulary import OPT_OUT_CHANNELS
from features.catalog import ALL_FEATURES
from features.compliance import contact_histories
from features.history import HOUR_BANDS
from pipelines.feature_store import FeatureStoreError, published_generation
from pipelines.registry import (
    NEXT_BEST_ACTION_MODEL,
    PROPENSITY_MODEL,
    RegistryError,
    load_model,
    open_registry,
    registry_name,
)
from serving.portfolio import (
    PortfolioFeatures,
    flags,
    portfolio_from_frame,
    read_closed_accounts,
    read_portfolio,
)
from serving.prepared import (
    EXIT_SUPERSEDED,
    Preparation,
    ReasonTable,
    features_path,
    launch,
    read_reasons,
    reasons_path,
)
from serving.prepared import read_features as read_prepared_features
from serving.worklist import build_worklist, closed_exclusions, promise_follow_ups

if TYPE_CHECKING:
    from training.interfaces import ActionModel, ScoringModel


class ServiceNotReady(RuntimeError):
    """Models or the online store are not loaded."""


class PayloadError(ValueError):
    """Feature payloads that cannot be scored: each problem as a FastAPI-style error entry
    (`loc`, `msg`, `type`)."""

    def __init__(self, problems: list[dict[str, Any]]) -> None:
        super().__init__(f"{len(problems)} problem(s) in the feature payloads")
        self.problems = problems


def payload_problems(
    features: Sequence[dict[str, Any]], numeric: set[str], categorical: set[str], known: set[str]
) -> list[dict[str, Any]]:
    """What is wrong with each account's feature payload: names that are neither a model
    input nor a feature of the catalog, text where a number is expected, numbers or flags where a
    category is expected, or no model feature at all."""
    problems = []
    for position, values in enumerate(features):
        where = ["body", "accounts", position, "features"]
        if not any(name in numeric or name in categorical for name in values):
            problems.append(
                {
                    "loc": where,
                    "msg": "no model feature given (at least one is needed; missing ones count "
                    "as unknown)",
                    "type": "missing_features",
                }
            )
        for name, value in values.items():
            if name not in known:
                problems.append(
                    {"loc": [*where, name], "msg": "not a feature", "type": "unknown_feature"}
                )
            elif name in numeric and isinstance(value, str):
                problems.append(
                    {
                        "loc": [*where, name],
                        "msg": "expected a number, got text",
                        "type": "number_expected",
                        "input": value,  # cut short and cleared of keys in the answer
                    }
                )
            elif name in categorical and value is not None and not isinstance(value, str):
                problems.append(
                    {
                        "loc": [*where, name],
                        "msg": f"expected a category (text), got {type(value).__name__}",
                        "type": "category_expected",
                    }
                )
    return problems


Model = TypeVar("Model")


@dataclass
class LoadedModel(Generic[Model]):
    """A registered model version as serving holds it: the fitted object and where it is from."""

    name: str
    alias: str
    version: str
    run_id: str | None
    model: Model

    @property
    def feature_service(self) -> str | None:
        return getattr(self.model, "metadata_", {}).get("feature_service")


if TYPE_CHECKING:
    LoadedScorer = LoadedModel[ScoringModel]
    LoadedActions = LoadedModel[ActionModel]


def read_history(path: Path, columns: list[str]) -> pd.DataFrame:
    """Columns of an event table the worklist reads, ids as text (account ids categoricals,
    offer ids Arrow text, as in the contracts)."""
    frame = pd.read_parquet(path, columns=columns)
    table = Path(path).stem  # contacts, promises, offers
    ids = [name for name in id_columns(table) if name in frame.columns]
    return frame.assign(**{name: coerce_ids(table, name, frame[name])[0] for name in ids})


def load_registered(name: str, alias: str) -> LoadedModel[Any]:
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


DEFAULT_FEATURE_SERVICE = "debtor_scoring_v1"
MODEL_NAMES_SERVED = (PROPENSITY_MODEL, NEXT_BEST_ACTION_MODEL)
PREPARE_ATTEMPTS = 3
"""Preparation processes started for the same files before the service goes on without them
(swapping anyway, with reason codes computed on demand)."""


@dataclass
class Encoded:
    """Rows encoded for each model: propensity, and the action models' contact and value
    inputs (None without an action model)."""

    propensity: np.ndarray
    contact: np.ndarray | None
    value: np.ndarray | None

    def take(self, rows: np.ndarray) -> Encoded:
        return Encoded(
            self.propensity[rows],
            None if self.contact is None else self.contact[rows],
            None if self.value is None else self.value[rows],
        )


@dataclass
class ScoringService:
    settings: ServingSettings
    propensity: LoadedScorer | None = None
    actions: LoadedActions | None = None
    portfolio: PortfolioFeatures | None = None
    history: dict[str, pd.DataFrame] = field(default_factory=dict)
    closed: pd.Series = field(default_factory=lambda: pd.Series(dtype=object))
    """Account id -> why it is closed (settled, paid in full, recalled, ...): never scored
    nor worked."""
    rules: ContactRules | None = None
    refused: dict[str, set[str]] = field(default_factory=dict)
    """Versions that failed to load or to answer a smoke prediction (not retried)."""
    errors: list[str] = field(default_factory=list)
    tracking_uri: str | None = None
    registry_open: bool = False
    """Whether MLflow points at the registry (a missing embedded store is looked for again)."""
    preparations: dict[Path, Preparation] = field(default_factory=dict)
    """Reasons file -> the preparation process started for it (see serving.prepared)."""
    pending: dict[str, tuple[LoadedModel[Any], PortfolioFeatures]] = field(default_factory=dict)
    """Model versions loaded and smoke-tested (with the copy they will serve from), waiting
    for their reason codes to be prepared."""
    notes: list[str] = field(default_factory=list)
    """What the preparations did since the watch last reported."""
    looking: bool = False
    """Whether the last refresh found a preparation at work (its own or another worker's)."""

    @classmethod
    def load(cls, settings: ServingSettings, tracking_uri: str | None = None) -> ScoringService:
        """Load champions and the online store; what fails is recorded, not raised, so the
        service can start, answer /health and report what is missing on /ready."""
        service = cls(settings)
        service.load_champions(tracking_uri)
        service.load_portfolio()
        try:
            service.rules = load_rules(settings.contact_rules)
        except RulesError as error:  # names the file and the problem
            service.errors.append(str(error))
        except Exception as error:
            service.errors.append(f"contact rules {settings.contact_rules}: {type(error).__name__}")
        return service

    def _store_problem(self) -> str:
        return f"online store of {Path(self.settings.portfolio)}"

    def load_portfolio(self) -> bool:
        """Read the features and the contact history; on failure record why (a later call,
        from the watch, retries: the store may not be published yet). Returns success."""
        folder = Path(self.settings.portfolio)
        problem = self._store_problem()
        try:
            portfolio = self.read_features()
            history = {
                "contacts": read_history(
                    folder / "contacts.parquet",
                    ["account_id", "channel", "direction", "attempted_at", "outcome"],
                ),
                "promises": read_history(
                    folder / "promises.parquet",
                    ["account_id", "due_at", "amount", "kept", "offer_id"],
                ),
                "offers": read_history(folder / "offers.parquet", ["offer_id", "kind"]),
            }
            closed = read_closed_accounts(folder, portfolio.frame.index, pd.Timestamp.now(tz="UTC"))
        except Exception as error:  # our store errors say what to do; others, their type only
            why = str(error) if isinstance(error, FeatureStoreError) else type(error).__name__
            others = [e for e in self.errors if not e.startswith(problem)]
            self.errors = [*others, f"{problem}: {why}"]
            return False
        self.history = history
        self.closed = closed
        self.portfolio = portfolio
        self.errors = [e for e in self.errors if not e.startswith(problem)]
        return True

    def load_champions(self, tracking_uri: str | None) -> None:
        """Load the models holding the serving alias; each failure is recorded in one line
        naming the registry and why (our registry errors carry no data values)."""
        alias = self.settings.model_alias
        self.tracking_uri = tracking_uri
        try:
            open_registry(tracking_uri, create=False)
        except RegistryError as error:  # each model says why it is missing
            self.errors += [f"{name}@{alias}: {error}" for name in MODEL_NAMES_SERVED]
            return
        self.registry_open = True
        for attribute, name in zip(("propensity", "actions"), MODEL_NAMES_SERVED, strict=True):
            try:
                setattr(self, attribute, load_registered(name, alias))
            except RegistryError as error:
                self.errors.append(f"{name}@{alias}: {error}")
            except Exception as error:  # MLflow's own types: their text may quote paths
                self.errors.append(
                    f"{name}@{alias}: {type(error).__name__} loading from {registry_name()}"
                )

    def feature_services(self, *models: LoadedModel[Any] | None) -> list[str]:
        """The feature services the given models (default: those serving) read."""
        chosen = models or (self.propensity, self.actions)
        named = [m.feature_service for m in chosen if m is not None and m.feature_service]
        return list(dict.fromkeys(named)) or [DEFAULT_FEATURE_SERVICE]

    def read_features(self, *models: LoadedModel[Any] | None) -> PortfolioFeatures:
        """Every account's latest features from the online store, for the given models (from
        the features file prepared for the published generation when there is one)."""
        chosen = [m for m in (models or (self.propensity, self.actions)) if m is not None]
        folder = Path(self.settings.portfolio)
        services, names = self.feature_services(*chosen), self._model_features(chosen)
        generation = published_generation(folder) if self.settings.precompute_reasons else None
        prepared = features_path(folder, generation.name, services) if generation else None
        if generation is not None and prepared is not None and prepared.exists():
            try:  # a restarted worker: what a preparation read from this generation
                frame = read_prepared_features(prepared)
                return portfolio_from_frame(folder, frame, generation.name, services, names)
            except Exception:  # unreadable: read the store itself
                pass
        return read_portfolio(folder, services, names)

    @property
    def ready(self) -> bool:
        return self.propensity is not None and self.portfolio is not None and self.rules is not None

    def versions(self) -> dict[str, str]:
        return {m.name: m.version for m in (self.propensity, self.actions) if m is not None}

    def _ready_state(
        self,
    ) -> tuple[LoadedScorer, LoadedActions | None, PortfolioFeatures]:
        """The models and features of this request (a swap during it does not change them)."""
        propensity, actions, portfolio = self.propensity, self.actions, self.portfolio
        if propensity is None or portfolio is None or not self.ready:
            raise ServiceNotReady("; ".join(self.errors) or "not loaded")
        return propensity, actions, portfolio

    @staticmethod
    def _encoded_portfolio(
        portfolio: PortfolioFeatures,
        propensity: LoadedScorer,
        actions: LoadedActions | None,
    ) -> Encoded:
        """The whole portfolio encoded for these model versions (computed once per copy)."""
        matrix = portfolio.encoded(
            ("propensity", propensity.version), propensity.model.encoder_.to_array
        )
        contact = value = None
        if actions is not None:
            contact, value = portfolio.encoded(
                ("actions", actions.version), actions.model.encode_accounts
            )
        return Encoded(matrix, contact, value)

    def _score(
        self,
        account_ids: np.ndarray,
        encoded: Encoded,
        raw: Callable[[np.ndarray], pd.DataFrame],
        weekdays: np.ndarray,
        opted_out: dict[str, np.ndarray],
        with_reasons: bool,
        state: tuple[LoadedScorer, LoadedActions | None, PortfolioFeatures | None],
        rows: np.ndarray | None,
    ) -> list[dict[str, Any]]:
        """Score encoded rows (`rows`: their places in the stored copy, None for payloads):
        probability, amount, best action, reasons."""
        propensity, actions, portfolio = state
        model = propensity.model
        probability, amount = model.predict_encoded(encoded.propensity)
        reasons = (
            self._reasons(encoded.propensity, raw, propensity, portfolio, rows)
            if with_reasons
            else None
        )
        best = None
        if actions is not None and encoded.contact is not None and encoded.value is not None:
            action_model = actions.model
            matrix = action_model.action_matrix(encoded.contact, encoded.value, weekdays)
            choice, expected = action_model.best_choice(matrix, opted_out)
            best = {name: values[choice] for name, values in action_model.action_columns().items()}
            best |= {
                "p_contact": matrix["p_contact"][np.arange(len(choice)), choice],
                "expected_net": expected[np.arange(len(choice)), choice],
            }
        items = []
        for position, account_id in enumerate(account_ids):
            item: dict[str, Any] = {
                "account_id": str(account_id),
                "status": "scored",
                "p_payment_30d": float(probability[position]),
                "expected_amount_30d": _number(amount[position]),
                "reasons": reasons[position] if reasons is not None else [],
            }
            if best is not None:
                band = str(best["hour_band"][position])
                item["best_action"] = {
                    "channel": str(best["channel"][position]),
                    "hour_band": band,
                    "local_window": _window(band),
                    "offer": str(best["offer"][position]),
                    "discount_pct": _number(best["discount_pct"][position]),
                    "installments": _whole(best["installments"][position]),
                    "p_contact": float(best["p_contact"][position]),
                    "expected_net": float(best["expected_net"][position]),
                }
            items.append(item)
        return items

    def _reasons(
        self,
        encoded: np.ndarray,
        raw: Callable[[np.ndarray], pd.DataFrame],
        propensity: LoadedScorer,
        portfolio: PortfolioFeatures | None,
        rows: np.ndarray | None,
    ) -> list[list[dict[str, Any]]]:
        """Reason codes per row: prepared ones of the stored copy when at hand, else computed
        now (exact TreeSHAP dominates a score's cost) and, for stored rows, kept for reuse up
        to `reason_cache` per model version and copy."""
        table = None
        if portfolio is not None and rows is not None:
            table = self._reason_table(portfolio, propensity)
        found: list[list[dict[str, Any]] | None] = [None] * len(encoded)
        if table is not None and rows is not None:
            for position, row in enumerate(rows):
                text = table.get(int(row))
                if text is not None:
                    found[position] = json.loads(text)
        missing = np.array([i for i, value in enumerate(found) if value is None], dtype=int)
        if len(missing):
            computed = propensity.model.reasons_encoded(
                encoded[missing], raw(missing), self.settings.reasons
            )
            for position, reasons in zip(missing, computed, strict=True):
                found[position] = reasons
                keep = table is not None and len(table.computed) < self.settings.reason_cache
                if keep and table is not None and rows is not None:
                    table.computed[int(rows[position])] = json.dumps(reasons)
        return [value or [] for value in found]

    def _reason_table(self, portfolio: PortfolioFeatures, scorer: LoadedScorer) -> ReasonTable:
        key = (scorer.version, self.settings.reasons)
        if key not in portfolio.reasons:
            portfolio.reasons[key] = ReasonTable.empty(len(portfolio.frame))
        return portfolio.reasons[key]

    def reasons_held(self) -> tuple[int, int]:
        """(Accounts whose reason codes are at hand, accounts with features) for the models
        and features serving now."""
        propensity, portfolio = self.propensity, self.portfolio
        if propensity is None or portfolio is None:
            return 0, 0
        total = int(portfolio.has_features.sum())
        table = portfolio.reasons.get((propensity.version, self.settings.reasons))
        return (min(table.held(), total) if table is not None else 0), total

    def score_ids(self, account_ids: Sequence[str], with_reasons: bool) -> list[dict[str, Any]]:
        """Score accounts by id; closed and unknown ones are reported per item, unscored."""
        state = propensity, actions, portfolio = self._ready_state()
        positions = portfolio.positions(account_ids)
        why_closed = self.closed.reindex(list(account_ids)).to_numpy(object)
        is_closed = pd.notna(why_closed)
        known = portfolio.known(positions) & ~is_closed
        rows = positions[known]
        encoded = self._encoded_portfolio(portfolio, propensity, actions).take(rows)
        scored = self._score(
            np.asarray(account_ids, dtype=object)[known],
            encoded,
            lambda subset: portfolio.frame.iloc[rows[subset]],
            portfolio.local_weekdays(rows, pd.Timestamp.now(tz="UTC")),
            {channel: flags[rows] for channel, flags in portfolio.opted_out.items()},
            with_reasons,
            state,
            rows,
        )
        results, it = [], iter(scored)
        for account_id, is_known, reason in zip(account_ids, known, why_closed, strict=True):
            if is_known:
                results.append(next(it))
            elif pd.notna(reason):
                results.append(
                    {"account_id": str(account_id), "status": "closed", "detail": reason}
                )
            else:
                results.append(
                    {
                        "account_id": str(account_id),
                        "status": "unknown_account",
                        "detail": "no features for this account in the online store",
                    }
                )
        return results

    def score_payloads(self, payloads: Sequence[Any], with_reasons: bool) -> list[dict[str, Any]]:
        """Score full feature payloads (no store lookup)."""
        propensity, actions = self.propensity, self.actions
        if propensity is None:
            raise ServiceNotReady("; ".join(self.errors) or "not loaded")
        names = list(propensity.model.feature_names_)
        encoders = [propensity.model.encoder_]
        if actions is not None:
            names += [n for n in actions.model.features if n not in set(names)]
            encoders.append(actions.model.contact_encoder_)
        categorical = {n for encoder in encoders for n in encoder.categories_} & set(names)
        numeric = set(names) - categorical
        known = set(names) | {spec.name for spec in ALL_FEATURES}
        problems = payload_problems([p.features for p in payloads], numeric, categorical, known)
        if problems:
            raise PayloadError(problems)
        frame = pd.DataFrame([{name: p.features.get(name) for name in names} for p in payloads])
        ids = np.array([p.account_id for p in payloads], dtype=object)
        encoded = Encoded(
            propensity.model.encoder_.to_array(frame),
            *(actions.model.encode_accounts(frame) if actions is not None else (None, None)),
        )
        now = pd.Timestamp.now(tz="UTC")
        portfolio = self.portfolio
        if portfolio is not None:  # the debtor's time zone when the portfolio knows the account
            positions = portfolio.positions(ids)
            weekdays = np.where(
                positions >= 0,
                portfolio.local_weekdays(np.maximum(positions, 0), now),
                now.weekday(),
            )
        else:
            weekdays = np.full(len(ids), now.weekday())
        opted_out = {
            channel: flags(frame[f"opted_out_{channel}"])
            for channel in OPT_OUT_CHANNELS
            if f"opted_out_{channel}" in frame
        }
        return self._score(
            ids,
            encoded,
            lambda subset: frame.iloc[subset],
            weekdays,
            opted_out,
            with_reasons,
            (propensity, actions, None),
            None,
        )

    def worklist(
        self, day: Any, capacity: dict[str, int], account_ids: Sequence[str] | None
    ) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, int]]:
        """The day's compliant worklist over the given accounts (default: every account)."""
        propensity, actions, portfolio = self._ready_state()
        if actions is None:
            raise ServiceNotReady("; ".join(self.errors) or "no next-best-action model loaded")
        # each account once, in the order asked
        ids = np.asarray(
            list(dict.fromkeys(account_ids)) if account_ids is not None else portfolio.frame.index,
            dtype=object,
        )
        empty = pd.DataFrame(columns=["account_id", "reason"])
        if not len(ids):
            zero = {"requested": 0, "closed": 0, "unknown_or_settled": 0, "considered": 0}
            return pd.DataFrame(), empty, {**zero, "scheduled": 0, "blocked": 0}
        positions = portfolio.positions(ids)
        closed = closed_exclusions(ids, self.closed)
        is_closed = np.isin(ids, closed["account_id"].to_numpy())
        usable = portfolio.known(positions) & portfolio.owing[np.maximum(positions, 0)]
        usable &= ~is_closed
        rows = positions[usable]
        scored_ids = ids[usable]
        counts = {
            "requested": len(ids),
            "closed": int(is_closed.sum()),
            "unknown_or_settled": int((~usable & ~is_closed).sum()),
            "considered": len(scored_ids),
            "scheduled": 0,
            "blocked": 0,
        }
        if not len(rows):  # nothing known, owing and open: an empty worklist, not an error
            return pd.DataFrame(), closed, counts
        encoded = self._encoded_portfolio(portfolio, propensity, actions).take(rows)
        assert encoded.contact is not None and encoded.value is not None
        model = actions.model
        matrix = model.action_matrix(encoded.contact, encoded.value, day.weekday())
        candidates = self._channel_candidates(model, matrix, scored_ids)
        accounts = pd.DataFrame(
            {
                "account_id": scored_ids,
                "region": portfolio.region[rows],
                "timezone": portfolio.timezone[rows],
            }
        )
        zone_of_account = pd.Series(portfolio.timezone[rows], index=scored_ids)
        rules = self.rules
        if rules is None:  # not ready: /ready says why
            raise ServiceNotReady("; ".join(self.errors) or "no contact rules loaded")
        histories = contact_histories(
            self.history["contacts"], zone_of_account, day, rules.lookback_days()
        )
        follow_ups = promise_follow_ups(
            self.history["promises"], self.history["offers"], zone_of_account, day
        )
        items, excluded = build_worklist(
            candidates, accounts, histories, follow_ups, rules, day, capacity
        )
        counts.update(scheduled=len(items), blocked=len(excluded))
        return items, pd.concat([closed, excluded], ignore_index=True), counts

    @staticmethod
    def _channel_candidates(
        model: ActionModel, matrix: dict[str, np.ndarray], account_ids: np.ndarray
    ) -> pd.DataFrame:
        """Each account's best action on each channel."""
        table = model.actions_
        channels = model.action_columns()["channel"]
        expected = matrix["expected_net"]
        every = np.arange(len(account_ids))
        parts = []
        for channel in dict.fromkeys(channels):
            columns = np.flatnonzero(channels == channel)
            on_channel = expected[:, columns]
            pick = on_channel.argmax(axis=1)  # the first on ties, as best_choice
            parts.append(
                table.iloc[columns[pick]]
                .reset_index(drop=True)
                .assign(account_id=account_ids, expected_net=on_channel[every, pick])
            )
        return pd.concat(parts, ignore_index=True)

    def smoke_test(self, attribute: str, candidate: LoadedModel[Any]) -> PortfolioFeatures:
        """Raise unless the candidate gives sane answers on real accounts through the serving
        path; return the feature copy it will serve from (re-read when it needs features the
        current copy lacks), already encoded for it."""
        portfolio = self.portfolio
        if portfolio is None:
            raise ServiceNotReady("no online store to draw smoke-test rows from")
        if not set(self.feature_services(candidate)) <= set(portfolio.services):
            others = [m for m in (self.propensity, self.actions) if m is not None]
            swapped = [m for m in others if m.name != candidate.name]
            portfolio = self.read_features(candidate, *swapped)
        rows = np.flatnonzero(portfolio.has_features)[:5]
        if not len(rows):
            raise ServiceNotReady("no account with features for a smoke test")
        if attribute == "propensity":
            matrix = portfolio.encoded(
                ("propensity", candidate.version), candidate.model.encoder_.to_array
            )
            probability, _ = candidate.model.predict_encoded(matrix[rows])
            if len(probability) != len(rows) or not np.all((probability >= 0) & (probability <= 1)):
                raise ValueError("smoke prediction: probabilities outside [0, 1]")
        else:
            contact, value = portfolio.encoded(
                ("actions", candidate.version), candidate.model.encode_accounts
            )
            matrix = candidate.model.action_matrix(contact[rows], value[rows], 0)
            if not np.isfinite(matrix["expected_net"]).all():
                raise ValueError("smoke prediction: no finite action values")
        return portfolio

    def _model_features(self, models: Sequence[LoadedModel[Any]]) -> list[str]:
        names = [n for m in models for n in getattr(m.model, "feature_names_", m.model.features)]
        return list(dict.fromkeys(names))

    def prepare(self, generation: str, services: list[str], scorer: LoadedScorer) -> str:
        """Where the prepared files of a generation, its feature services and a model version
        stand: `ready`, `preparing` (a process is at work; started now if none was),
        `superseded` (the generation is no longer published) or `without` (preparation is
        off, or failed PREPARE_ATTEMPTS times: go on without it)."""
        if not self.settings.precompute_reasons:
            return "without"
        folder = Path(self.settings.portfolio)
        top = self.settings.reasons
        reasons = reasons_path(folder, generation, scorer.name, scorer.version, top)
        features = features_path(folder, generation, services)
        if reasons.exists() and features.exists():
            return "ready"
        state = self.preparations.get(reasons)
        if state is not None and state.process is not None and state.process.poll() is None:
            return self._preparing()
        what = f"{scorer.name} v{scorer.version} on {generation}"
        if state is not None and state.process is not None:
            status = state.process.returncode
            if status == EXIT_SUPERSEDED:
                return "superseded"
            state.failures += 1
            state.process = None
            if state.failures >= PREPARE_ATTEMPTS:
                self.notes.append(
                    f"preparation failed {state.failures} times: {what} (exit {status}); "
                    "going on without it"
                )
            else:
                self.notes.append(f"preparation failed: {what} (exit {status}); starting again")
        state = self.preparations.setdefault(reasons, Preparation(None))
        if state.failures >= PREPARE_ATTEMPTS:
            return "without"
        try:
            process = launch(
                folder, generation, services, scorer.name, scorer.version, top, self.tracking_uri
            )
        except OSError as error:  # e.g. a read-only portfolio folder: counted as a failure
            state.failures += 1
            self.notes.append(f"preparation not started: {what} ({type(error).__name__})")
            return "preparing" if state.failures < PREPARE_ATTEMPTS else "without"
        if process is None:  # another worker's preparation is at work: wait for it
            return self._preparing()
        state.process = process
        self.notes.append(f"preparing reasons of {what}")
        return self._preparing()

    def close(self, seconds: float = 10.0) -> None:
        """Stop the preparations still at work (they would finish for nobody), and reap them."""
        processes = [s.process for s in self.preparations.values() if s.process is not None]
        for process in processes:
            if process.poll() is None:
                process.terminate()
        for process in processes:
            try:
                process.wait(timeout=seconds)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()

    def _preparing(self) -> str:
        self.looking = True
        return "preparing"

    def with_reasons(self, portfolio: PortfolioFeatures, scorer: LoadedScorer) -> bool:
        """Whether a copy can serve a model version: its prepared reason codes are attached
        (read now if their file just appeared), or the service goes on without them; False
        while they are being prepared."""
        key = (scorer.version, self.settings.reasons)
        table = portfolio.reasons.get(key)
        if table is not None and table.prepared is not None:
            return True
        state = self.prepare(portfolio.stamp, list(portfolio.services), scorer)
        if state == "ready":
            path = reasons_path(
                Path(self.settings.portfolio),
                portfolio.stamp,
                scorer.name,
                scorer.version,
                self.settings.reasons,
            )
            portfolio.reasons[key] = read_reasons(path, portfolio.frame.index.to_numpy(object))
            return True
        return state == "without"

    def waiting(self) -> bool:
        """Whether a preparation was under way at the last look (the watch then looks more
        often). Reaps the preparation processes that ended."""
        running = [
            state.process.poll() is None
            for state in self.preparations.values()
            if state.process is not None
        ]
        return self.looking or bool(self.pending) or any(running)

    def _next_copy(
        self, generation: str, propensity: LoadedScorer | None, actions: LoadedActions | None
    ) -> PortfolioFeatures | None:
        """The feature copy of a newly published generation for these models, encoded for
        them: from the prepared files (None while they are prepared), or read from the
        online store when the service goes on without them."""
        models = [m for m in (propensity, actions) if m is not None]
        services = self.feature_services(*models)
        state = self.prepare(generation, services, propensity) if propensity else "without"
        if state in ("preparing", "superseded"):
            return None
        if state == "ready":
            folder = Path(self.settings.portfolio)
            frame = read_prepared_features(features_path(folder, generation, services))
            fresh = portfolio_from_frame(
                folder, frame, generation, services, self._model_features(models)
            )
            assert propensity is not None
            self.with_reasons(fresh, propensity)
        else:
            fresh = self.read_features(*models)
        if propensity is not None:
            self._encoded_portfolio(fresh, propensity, actions)
        return fresh

    def refresh_features(self) -> tuple[list[str], bool]:
        """Swap in a newly published online store generation (a new materialization) once
        it is prepared, or read the features for the first time if that failed so far.
        Returns the messages and whether a new generation waits to be swapped in."""
        portfolio = self.portfolio
        if portfolio is None:
            if not self.load_portfolio() or self.portfolio is None:
                return [], False
            return [f"swapped features: {int(self.portfolio.has_features.sum())} accounts"], False
        try:
            generation = portfolio.current_stamp()
            if generation is None or generation == portfolio.stamp:
                return [], False
            fresh = self._next_copy(generation, self.propensity, self.actions)
        except Exception as error:
            return [f"unreachable online store ({type(error).__name__})"], False
        if fresh is None:
            return [], True
        self.portfolio = fresh
        return [f"swapped features: {int(fresh.has_features.sum())} accounts"], False

    def refresh(self, swap: bool = True) -> list[str]:
        """Attach the prepared reason codes of what serves once they are ready; with `swap`,
        also load any new version holding the alias, smoke-test it, wait for its reason codes
        to be prepared, then swap it in. A version that fails is refused (and not retried)
        while the current one keeps serving. Requests in flight keep the model and features
        they started with."""
        messages: list[str] = []
        waiting_features = self.looking = False
        if swap:
            messages, waiting_features = self.refresh_features()  # first: tests need features
        if self.propensity is not None and self.portfolio is not None:
            self.with_reasons(self.portfolio, self.propensity)
        if swap and not waiting_features:  # a model swap waits for the new features
            messages += self._refresh_models()
        messages += self.notes
        self.notes = []
        return messages

    def _refresh_models(self) -> list[str]:
        """Swap in the new versions holding the alias together (a pair from one run never
        serves split), once the reason codes of the propensity model that will serve are
        prepared for the copy they will serve from."""
        if not self.registry_open:  # it did not exist at start: look again
            try:
                open_registry(self.tracking_uri, create=False)
                self.registry_open = True
            except RegistryError as error:
                return [f"unreachable registry: {error}"]
        messages: list[str] = []
        candidates = self._candidates(messages)
        if not candidates:
            return messages
        propensity = candidates.get("propensity", (self.propensity, None))[0]
        actions = candidates.get("actions", (self.actions, None))[0]
        copies = [copy for _, copy in candidates.values() if copy is not self.portfolio]
        portfolio = self.portfolio
        if len(copies) == 1 and len(candidates) == 1:
            portfolio = copies[0]
        elif copies:  # both new, and they need other features: one copy for both
            portfolio = self.read_features(propensity, actions)
            if propensity is not None:
                self._encoded_portfolio(portfolio, propensity, actions)
        if portfolio is None:
            return messages
        if propensity is not None and not self.with_reasons(portfolio, propensity):
            self.pending = dict(candidates)  # swapped once the reasons are ready
            return messages
        self.pending = {}
        self.portfolio = portfolio
        for attribute, (candidate, _) in candidates.items():
            current = getattr(self, attribute)
            setattr(self, attribute, candidate)
            previous = "none" if current is None else f"v{current.version}"
            messages.append(f"swapped {candidate.name} {previous} -> v{candidate.version}")
        return messages

    def _candidates(
        self, messages: list[str]
    ) -> dict[str, tuple[LoadedModel[Any], PortfolioFeatures]]:
        """The new versions holding the alias, loaded and smoke-tested (or kept from an
        earlier round while they wait), each with the feature copy it was tested on."""
        from mlflow.tracking import MlflowClient

        alias = self.settings.model_alias
        found = {}
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
            candidate, portfolio = self.pending.get(attribute, (None, None))
            kept = candidate is not None and candidate.version == version
            if kept and portfolio is not None and self.portfolio is not None:
                kept = portfolio.stamp == self.portfolio.stamp
            try:
                if not kept:
                    candidate = load_registered(name, alias)
                    if candidate.version != version:
                        continue  # the alias moved again while loading: next round
                    portfolio = self.smoke_test(attribute, candidate)
            except ServiceNotReady as error:  # no features to test it on yet: not its fault
                messages.append(f"waiting {name} v{version}: {error}")
                continue
            except Exception as error:
                self.refused.setdefault(name, set()).add(version)
                messages.append(f"refused {name} v{version}: {type(error).__name__}: {error}")
                continue
            assert candidate is not None and portfolio is not None
            found[attribute] = (candidate, portfolio)
        return found
