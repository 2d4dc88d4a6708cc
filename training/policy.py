"""Off-policy evaluation of a next-best-action policy from logged contacts (pure numpy).

The learned policy picks, for a logged account-day, a channel, an hour band and an offer; it
carries out a band at one of the band's logged hours, uniformly. Its probability of the logged
action is therefore 1[channel] x 1[band] / hours in band x (1[offer] where the offer could reach
the debtor, else 1: an unanswered call or an undelivered message has the same outcome whatever
offer was meant, and the logged probability is then of the channel and hour alone).

Estimates of the policy's mean net amount per contact, each with a 95% confidence interval:
- IPS: mean(w r), w = pi / mu (unbiased, noisy);
- SNIPS: sum(w r) / sum(w) (self-normalized, less noisy, slightly biased);
- DR: mean(q_pi + w (r - q_logged)), with q the model's prediction (doubly robust).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
import pandas as pd

from training.labels import OFFER_NONE

Z95 = 1.959963984540054


@dataclass(frozen=True)
class Estimate:
    value: float
    low: float
    high: float

    def as_dict(self, prefix: str) -> dict[str, float]:
        return {prefix: self.value, f"{prefix}_ci_low": self.low, f"{prefix}_ci_high": self.high}


def _mean_ci(terms: np.ndarray) -> Estimate:
    terms = np.asarray(terms, float)
    mean = float(terms.mean())
    half = Z95 * float(terms.std(ddof=1)) / np.sqrt(len(terms)) if len(terms) > 1 else np.nan
    return Estimate(mean, mean - half, mean + half)


def _same_offer(logged: pd.DataFrame, chosen: pd.DataFrame) -> np.ndarray:
    same = logged["offer"].to_numpy() == chosen["offer"].to_numpy()
    for column in ("discount_pct", "installments"):
        a = logged[column].to_numpy(float)
        b = chosen[column].to_numpy(float)
        same &= (a == b) | (np.isnan(a) & np.isnan(b))
    return same


def target_probability(
    logged: pd.DataFrame, chosen: pd.DataFrame, hours: Mapping[tuple[str, str], list[int]]
) -> np.ndarray:
    """pi(logged action | row) for a policy that chose `chosen` (one row per logged row)."""
    channel = logged["channel"].to_numpy() == chosen["channel"].to_numpy()
    band = logged["hour_band"].to_numpy() == chosen["hour_band"].to_numpy()
    count = np.array(
        [
            len(hours.get((str(c), str(b)), []))
            for c, b in zip(chosen["channel"], chosen["hour_band"], strict=True)
        ]
    )
    hour_known = np.array(
        [
            int(h) in hours.get((str(c), str(b)), [])
            for h, c, b in zip(
                logged["local_hour"], chosen["channel"], chosen["hour_band"], strict=True
            )
        ]
    )
    offer = np.where(logged["offer_matters"].to_numpy(bool), _same_offer(logged, chosen), True)
    probability = np.where(channel & band & hour_known & offer, 1.0 / np.maximum(count, 1), 0.0)
    return probability


def off_policy_estimates(
    reward: np.ndarray,
    logged_probability: np.ndarray,
    target_prob: np.ndarray,
    q_target: np.ndarray,
    q_logged: np.ndarray,
    seed: int = 0,
    bootstrap: int = 200,
) -> dict[str, float]:
    """IPS, SNIPS and DR estimates of the target policy's mean reward, and the logging policy's
    own mean reward (on-policy), each with a 95% interval; plus the effective sample size."""
    logged = np.asarray(logged_probability, float)
    unknown = int((~np.isfinite(logged) | (logged <= 0)).sum())
    if unknown:
        raise ValueError(
            f"off-policy estimates need the logging policy's probability of every logged "
            f"action; {unknown} of {len(logged)} are missing or not above 0"
        )
    reward = np.asarray(reward, float)
    w = np.asarray(target_prob, float) / logged
    ips = _mean_ci(w * reward)
    dr = _mean_ci(np.asarray(q_target, float) + w * (reward - np.asarray(q_logged, float)))
    total = w.sum()
    snips_value = float((w * reward).sum() / total) if total > 0 else float("nan")
    rng = np.random.default_rng(seed)
    draws = []
    for _ in range(bootstrap):
        pick = rng.integers(0, len(w), len(w))
        denominator = w[pick].sum()
        if denominator > 0:
            draws.append((w[pick] * reward[pick]).sum() / denominator)
    low, high = np.quantile(draws, [0.025, 0.975]) if draws else (np.nan, np.nan)
    snips = Estimate(snips_value, float(low), float(high))
    logging = _mean_ci(reward)
    return {
        **ips.as_dict("ips"),
        **snips.as_dict("snips"),
        **dr.as_dict("dr"),
        **logging.as_dict("logging_policy"),
        "effective_sample_size": float(total**2 / (w**2).sum()) if (w**2).sum() > 0 else 0.0,
        "rows": float(len(w)),
        "matched_rows": float((w > 0).sum()),
    }


def offer_code(offer: pd.Series) -> np.ndarray:
    """0 none, 1 discount, 2 payment plan (the simulator's codes)."""
    return offer.map({OFFER_NONE: 0, "discount": 1, "payment_plan": 2}).fillna(0).to_numpy(int)
