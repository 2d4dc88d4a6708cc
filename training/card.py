"""The model card: a short markdown page logged with every run (pure text)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any


def _metric_table(metrics: Mapping[str, float], keys: Sequence[str]) -> str:
    lines = ["| metric | value |", "|---|---|"]
    for key in keys:
        if key in metrics:
            lines.append(f"| {key} | {metrics[key]:.4f} |")
    return "\n".join(lines)


def model_card(
    name: str,
    purpose: str,
    data: Mapping[str, Any],
    metrics: Mapping[str, float],
    metric_keys: Sequence[str],
    features: Sequence[str],
    limits: Sequence[str],
) -> str:
    """Markdown: intended use, data window, metrics, inputs and known limits."""
    data_lines = "\n".join(f"- {key}: {value}" for key, value in data.items())
    limit_lines = "\n".join(f"- {line}" for line in limits)
    return f"""# Model card: {name}

## Intended use
{purpose}

Not for: decisions about credit, employment or housing; contacting anyone outside the legal
limits (the worklist enforces them); judging individual debtors without a person's review.

## Data
{data_lines}

## Metrics (test window, never used for training, early stopping or calibration)
{_metric_table(metrics, metric_keys)}

## Inputs
{len(features)} features from the feature service above. Audit-only attributes (age band,
gender, marital status, education) are never inputs. First inputs: {", ".join(features[:12])}
{"..." if len(features) > 12 else ""}

## Limits
{limit_lines}
"""
