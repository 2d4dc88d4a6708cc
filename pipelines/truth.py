"""Compare trained models with the simulator's hidden truth (simulated portfolios only).

Reads `DIR/truth/` (which models never see) and reports:
- the contactability model's ROC AUC against the AUC the true contact probabilities reach on
  the same test contacts (the ceiling), and their ratio;
- the propensity model's ROC AUC against the ceiling of the true payment probabilities,
  estimated by re-running the simulator from each test as-of time (Monte Carlo);
- the expected amount collected on the test window's account-days by four policies at the
  same capacity (a share of the account-days contacted): the learned next-best-action policy,
  the oracle (true best action and true best accounts), the logging policy, and "largest
  balance first" (with the logging policy's actions).

On a book with more test-window accounts than `training.sampling.EVALUATION_ACCOUNTS`, every
comparison is made on a fixed sample of them (one in k by a hash of the id): amounts are the
sample's, ratios estimate the book's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pipelines.portfolio import read_table
from simulator import behaviour as bh
from simulator.engine import SimulationConfig
from simulator.oracle import true_payment_probability
from training.config import ExperimentConfig
from training.fit import blocked_channels
from training.labels import label_names
from training.metrics import classification_metrics
from training.model import NextBestActionModel, PropensityModel
from training.policy import offer_code
from training.sampling import evaluation_sample
from training.splits import TEST, window

CAPACITY_SHARE = 0.3
"""Share of the test account-days each policy may contact in the capacity comparison."""
PROPENSITY_REPLICATES = 48


def _read_truth(folder: Path) -> dict[str, Any] | None:
    root = Path(folder) / "truth"
    if not (root / "contacts.parquet").is_file():
        return None
    contacts = pd.read_parquet(root / "contacts.parquet")
    return {  # contact ids as text, as validation reads them
        "contacts": contacts.assign(contact_id=contacts["contact_id"].astype(str).astype(object)),
        "debtors": pd.read_parquet(root / "debtors.parquet"),
        "accounts": pd.read_parquet(root / "accounts.parquet"),
        "params": json.loads((root / "params.json").read_text()),
    }


def behaviour_params(params: dict[str, Any]) -> bh.BehaviourParams:
    raw = dict(params["config"]["params"])
    raw["plan_lift"] = {int(k): v for k, v in raw["plan_lift"].items()}
    for name in ("product_effect", "channel_conversion", "contact_cost"):
        raw[name] = tuple(raw[name])
    return bh.BehaviourParams(**raw)


def true_states(rows: pd.DataFrame, truth: dict[str, Any], accounts: pd.DataFrame) -> pd.DataFrame:
    """The behaviour model's state behind each logged contact in `rows` (same order)."""
    state = rows[["contact_id", "account_id"]].merge(truth["contacts"], on="contact_id", how="left")
    products = accounts.set_index("account_id")["product"].astype(str)
    debtor_of = accounts.set_index("account_id")["debtor_id"]
    traits = truth["debtors"].set_index("debtor_id")
    debtor = rows["account_id"].map(debtor_of).to_numpy()
    extra = truth["accounts"].set_index("account_id")
    original = accounts.set_index("account_id")["original_balance"]
    return pd.DataFrame(
        {
            "balance": state["balance"].to_numpy(float),
            "original_balance": rows["account_id"].map(original).to_numpy(float),
            "days_past_due": state["days_past_due"].to_numpy(float),
            "payments_90d": state["payments_90d"].to_numpy(float),
            "broken_promises_90d": state["broken_promises_90d"].to_numpy(float),
            "contacts_7d": state["contacts_7d"].to_numpy(float),
            "pre_placement_payments": rows["account_id"]
            .map(extra["pre_placement_payments"])
            .to_numpy(float),
            "product_code": rows["account_id"]
            .map(products)
            .map({name: code for code, name in enumerate(bh.SIM_PRODUCTS)})
            .to_numpy(int),
            "willingness": traits.loc[debtor, "willingness"].to_numpy(float),
            "ability": traits.loc[debtor, "ability"].to_numpy(float),
            "segment_code": traits.loc[debtor, "segment"]
            .astype(str)
            .map({name: code for code, name in enumerate(bh.SEGMENTS)})
            .to_numpy(int),
            "phone_valid": traits.loc[debtor, "phone_valid"].to_numpy(bool),
            "email_status_code": traits.loc[debtor, "email_status"]
            .astype(str)
            .map({name: code for code, name in enumerate(bh.EMAIL_STATUS)})
            .to_numpy(int),
            "address_valid": traits.loc[debtor, "address_valid"].to_numpy(bool),
        }
    )


def _true_values(
    states: pd.DataFrame,
    rows_index: np.ndarray,
    channel: np.ndarray,
    hour: np.ndarray,
    weekday: np.ndarray,
    offer: np.ndarray,
    discount: np.ndarray,
    installments: np.ndarray,
    params: bh.BehaviourParams,
) -> pd.DataFrame:
    actions = {
        "channel_code": channel,
        "local_hour": hour,
        "weekday": weekday,
        "offer_code": offer,
        "discount_pct": discount,
        "installments": np.nan_to_num(installments).astype(int),
    }
    state = states.iloc[rows_index].reset_index(drop=True)
    return bh.action_outcomes(state, actions, params)


def _channel_codes(channels: pd.Series) -> np.ndarray:
    return channels.map({name: code for code, name in enumerate(bh.CHANNEL_CODES)}).to_numpy(int)


def _learned_policy(
    rows: pd.DataFrame,
    states: pd.DataFrame,
    model: NextBestActionModel,
    params: bh.BehaviourParams,
) -> tuple[pd.DataFrame, np.ndarray, np.ndarray]:
    """The model's best action for each row, its band carried out at each logged hour equally:
    the actions chosen, and their true expected amount and net per row."""
    n = len(rows)
    weekday = rows["weekday"].to_numpy(int)
    chosen = model.best_actions(rows, weekday, blocked_channels(rows))
    band_hours = dict(model.hours_)
    pairs = pd.MultiIndex.from_arrays(
        [chosen["channel"].astype(str), chosen["hour_band"].astype(str)]
    )
    codes, contexts = pd.factorize(pairs)
    expanded_rows, expanded_hours, weights = [np.zeros(0, np.int64)], [np.zeros(0)], [np.zeros(0)]
    for code, context in enumerate(contexts):  # each row: every logged hour of its band
        hours = np.asarray(band_hours.get(tuple(context), []), dtype=float)
        if not len(hours):
            continue
        positions = np.flatnonzero(codes == code)
        expanded_rows.append(np.repeat(positions, len(hours)))
        expanded_hours.append(np.tile(hours, len(positions)))
        weights.append(np.full(len(positions) * len(hours), 1.0 / len(hours)))
    order = np.argsort(np.concatenate(expanded_rows), kind="stable")  # rows in order, as before
    expanded_rows_a = np.concatenate(expanded_rows)[order]
    expanded_hours_a = np.concatenate(expanded_hours)[order].astype(int)
    outcome = _true_values(
        states,
        expanded_rows_a,
        _channel_codes(chosen["channel"])[expanded_rows_a],
        expanded_hours_a,
        weekday[expanded_rows_a],
        offer_code(chosen["offer"])[expanded_rows_a],
        chosen["discount_pct"].to_numpy(float)[expanded_rows_a],
        chosen["installments"].to_numpy(float)[expanded_rows_a],
        params,
    )
    w = np.concatenate(weights)[order]
    amount, net = np.zeros(n), np.zeros(n)
    np.add.at(amount, expanded_rows_a, w * outcome["expected_amount_30d"].to_numpy())
    np.add.at(net, expanded_rows_a, w * outcome["expected_net_30d"].to_numpy())
    return chosen, amount, net


def _oracle_policy(
    rows: pd.DataFrame,
    states: pd.DataFrame,
    model: NextBestActionModel,
    params: bh.BehaviourParams,
) -> tuple[np.ndarray, np.ndarray]:
    """The true best action for each row among every channel, hour and offer the policy could
    take (blocked channels excluded): its true expected amount and net."""
    n = len(rows)
    weekday = rows["weekday"].to_numpy(int)
    band_hours = dict(model.hours_)
    offers = model.actions_[["offer", "discount_pct", "installments"]].drop_duplicates()
    grid = [
        (code, hour, offer)
        for code, channel in enumerate(bh.CHANNEL_CODES)
        for hour in sorted({h for (c, _), hs in band_hours.items() if c == channel for h in hs})
        for offer in range(len(offers))
    ]
    best_amount = np.full(n, -np.inf)
    best_net = np.full(n, -np.inf)
    all_rows = np.arange(n)
    offer_codes = offer_code(offers["offer"])
    discounts = offers["discount_pct"].to_numpy(float)
    terms = offers["installments"].to_numpy(float)
    blocked = blocked_channels(rows)
    for code, hour, index in grid:
        values = _true_values(
            states,
            all_rows,
            np.full(n, code),
            np.full(n, hour),
            weekday,
            np.full(n, offer_codes[index]),
            np.full(n, discounts[index]),
            np.full(n, terms[index]),
            params,
        )
        net = values["expected_net_30d"].to_numpy()
        net = np.where(blocked.get(bh.CHANNEL_CODES[code], np.zeros(n, bool)), -np.inf, net)
        better = net > best_net
        best_net = np.where(better, net, best_net)
        best_amount = np.where(better, values["expected_amount_30d"].to_numpy(), best_amount)
    return best_amount, best_net


def _at_capacity(
    order: np.ndarray, k: int, amount: np.ndarray, net: np.ndarray, alone: np.ndarray
) -> tuple[float, float]:
    """Total amount and net when the first `k` rows of `order` are contacted and the rest
    are left alone."""
    contacted = np.zeros(len(alone), bool)
    contacted[order[:k]] = True
    return (
        float(np.where(contacted, amount, alone).sum()),
        float(np.where(contacted, net, alone).sum()),
    )


def policy_comparison(
    rows: pd.DataFrame,
    states: pd.DataFrame,
    model: NextBestActionModel,
    params: bh.BehaviourParams,
    capacity_share: float = CAPACITY_SHARE,
) -> dict[str, float]:
    """Expected collected and net amounts (from the truth) of four policies at one capacity."""
    rows = rows.reset_index(drop=True)
    n = len(rows)
    chosen, learned_amount, learned_net = _learned_policy(rows, states, model, params)
    best_amount, best_net = _oracle_policy(rows, states, model, params)
    # logging: the logged action's true value (the truth of what was done)
    cost = np.asarray(params.contact_cost)[_channel_codes(rows["channel"])]
    logged_amount = rows["truth_expected_amount_30d"].to_numpy(float)
    logged_net = logged_amount - cost
    alone = bh.no_action_outcomes(states, params)["expected_amount_30d"].to_numpy()
    k = max(1, round(capacity_share * n))
    results: dict[str, float] = {"truth_policy_rows": float(n), "truth_capacity": float(k)}
    rankings = {
        "learned": (
            np.argsort(-chosen["uplift"].to_numpy(), kind="stable"),
            learned_amount,
            learned_net,
        ),
        "oracle": (np.argsort(-(best_net - alone), kind="stable"), best_amount, best_net),
        "largest_balance": (
            np.argsort(-states["balance"].to_numpy(), kind="stable"),
            logged_amount,
            logged_net,
        ),
    }
    for name, (order, amount, net) in rankings.items():
        collected, net_total = _at_capacity(order, k, amount, net, alone)
        results[f"truth_collected_{name}"] = collected
        results[f"truth_net_{name}"] = net_total
    share = k / n  # the logging policy's pick is random among these account-days
    results["truth_collected_logging"] = float(
        share * logged_amount.sum() + (1 - share) * alone.sum()
    )
    results["truth_net_logging"] = float(share * logged_net.sum() + (1 - share) * alone.sum())
    results["truth_net_per_contact_learned"] = float(learned_net.mean())
    results["truth_net_per_contact_oracle"] = float(best_net.mean())
    results["truth_net_per_contact_logging"] = float(logged_net.mean())
    return results


def truth_evaluation(
    folder: Path,
    prepared: Any,
    model: PropensityModel,
    action_model: NextBestActionModel | None,
    config: ExperimentConfig,
) -> dict[str, float]:
    """Every comparison with the truth this portfolio allows (none without `truth/`)."""
    truth = _read_truth(folder)
    if truth is None:
        return {}
    accounts = read_table(Path(folder), "accounts")
    params = behaviour_params(truth["params"])
    results: dict[str, float] = {}
    if action_model is not None and prepared.actions is not None:
        test = window(prepared.actions, TEST)
        test = test[evaluation_sample(test["account_id"])].reset_index(drop=True)
        merged = test.merge(
            truth["contacts"][["contact_id", "p_right_party_contact", "expected_amount_30d"]],
            on="contact_id",
            how="left",
        ).rename(columns={"expected_amount_30d": "truth_expected_amount_30d"})
        reached = merged["reached"].to_numpy(int)
        ceiling = classification_metrics(reached, merged["p_right_party_contact"].to_numpy())
        achieved = classification_metrics(reached, action_model.predict_contact(merged))
        results["truth_contact_roc_auc_ceiling"] = ceiling["roc_auc"]
        results["truth_contact_roc_auc_ratio"] = achieved["roc_auc"] / ceiling["roc_auc"]
        states = true_states(merged, truth, accounts)
        results.update(policy_comparison(merged, states, action_model, params))
    results.update(_propensity_ceiling(folder, prepared, model, truth, config))
    return results


def _propensity_ceiling(
    folder: Path,
    prepared: Any,
    model: PropensityModel,
    truth: dict[str, Any],
    config: ExperimentConfig,
) -> dict[str, float]:
    """The ceiling AUC of true payment probabilities on the propensity test rows."""
    raw = dict(truth["params"]["config"])
    raw["params"] = behaviour_params(truth["params"])
    raw["start"] = pd.Timestamp(raw["start"]).date()
    sim_config = SimulationConfig(**raw)
    test = window(prepared.propensity, TEST)
    sample = evaluation_sample(test["account_id"])
    test = test[sample]
    times = sorted(test["event_timestamp"].unique())
    oracle = true_payment_probability(
        sim_config,
        [pd.Timestamp(t) for t in times],
        config.horizon_days,
        PROPENSITY_REPLICATES,
        accounts=test["account_id"].astype(str).unique(),  # only these: the rest costs
    )
    oracle["event_timestamp"] = pd.to_datetime(oracle["event_timestamp"], utc=True)
    merged = test.merge(oracle, on=["account_id", "event_timestamp"], how="inner")
    paid, _ = label_names(config.horizon_days)
    y = merged[paid].to_numpy()
    ceiling = classification_metrics(y, merged["p_payment_true"].to_numpy())["roc_auc"]
    achieved = classification_metrics(y, model.predict_proba(merged)[:, 1])["roc_auc"]
    return {
        "truth_roc_auc_ceiling": ceiling,
        "truth_roc_auc_model_same_rows": achieved,
        "truth_roc_auc_ratio": achieved / ceiling,
        "truth_propensity_rows_matched": float(len(merged) / max(len(test), 1)),
        "truth_propensity_rows": float(len(merged)),
    }
