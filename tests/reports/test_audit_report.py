"""The audit end to end on a real registry: an honest model passes and a planted bias is
flagged; the report renders in headless Chromium; the promotion gate blocks a flagged
challenger and logs the override."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from data_contracts.schemas import PROTECTED_ATTRIBUTES
from tests.reports.conftest import OLDER, RULES, Registry, older_debtors_pushed_down

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def test_an_honest_model_passes_and_a_planted_bias_is_flagged(registry: Registry) -> None:
    from pipelines.audit import run_audit

    honest = run_audit(registry.portfolio, registry.config, "champion", registry.tracking_uri)
    flagged = honest.groups[honest.groups["status"] == "flag"]
    assert honest.verdict != "flag", flagged[["attribute", "group", "size", "note"]].to_string()
    assert not (honest.groups["status"] == "flag").any()
    assert set(honest.groups["attribute"]) == set(PROTECTED_ATTRIBUTES)
    assert not set(honest.features) & set(PROTECTED_ATTRIBUTES)
    inputs = next(c for c in honest.checks if "inputs" in c.name.lower())
    assert inputs.status == "pass"
    big = honest.groups[honest.groups["effective_size"] >= registry.config.audit.min_group_size]
    assert len(big) >= 5
    for column in ("top_share", "adverse_impact_ratio", "tpr", "mean_predicted"):
        known = big.dropna(subset=[column])
        assert (known[f"{column}_low"] <= known[column] + 1e-9).all(), column
        assert (known[column] <= known[f"{column}_high"] + 1e-9).all(), column
    assert honest.groups["size"].sum() == 3 * honest.window["audit_rows"]
    assert honest.mean_abs_shap.iloc[0] > 0 and len(honest.reason_counts)
    assert {"attribute", "roc_auc", "top_inputs"} <= set(honest.proxies.columns)

    biased = run_audit(
        registry.portfolio,
        registry.config,
        "champion",
        registry.tracking_uri,
        score_shift=older_debtors_pushed_down(registry.portfolio),
    )
    shown = [
        "group",
        "size",
        "effective_size",
        "payers",
        "adverse_impact_ratio",
        "opportunity_ratio",
    ]
    shown += [
        "adverse_impact_p",
        "opportunity_p",
        "mean_predicted",
        "actual_rate",
        "under_scored_p",
        "note",
    ]
    ages = biased.groups[biased.groups["attribute"] == "age_band"]
    assert biased.verdict == "flag", ages[shown].to_string()
    flagged = biased.groups[biased.groups["status"] == "flag"]
    assert set(flagged["attribute"]) == {"age_band"}
    assert set(flagged["group"]) <= set(OLDER) and len(flagged)
    assert (flagged["adverse_impact_ratio"] < 0.8).all()
    assert any(c.status == "flag" and "age_band" in c.name for c in biased.checks)


def _chromium() -> str:
    binary = shutil.which("chromium") or shutil.which("chromium-browser")
    if binary is None:
        pytest.fail("headless Chromium is missing: `make browser` installs the system package")
    return binary


def _headless(profile: Path, *args: str) -> subprocess.CompletedProcess[str]:
    flags = [
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        "--hide-scrollbars",
        f"--user-data-dir={profile}",
    ]
    return subprocess.run(
        [_chromium(), *flags, *args], capture_output=True, text=True, timeout=180, check=False
    )


def test_the_report_renders_in_a_browser_and_is_stored_with_the_model(
    registry: Registry, tmp_path: Path
) -> None:
    from mlflow.tracking import MlflowClient

    from pipelines.audit import audit_and_store
    from pipelines.registry import REPORT_FILE, VERDICT_TAG, stored_audit

    result, (report, summary) = audit_and_store(
        registry.portfolio,
        registry.config,
        "champion",
        tmp_path / "reports",
        rules_path=RULES,
        tracking_uri=registry.tracking_uri,
    )
    assert report.name == REPORT_FILE
    page = report.read_text()
    assert "<script" not in page and 'src="http' not in page  # self-contained
    assert json.loads(summary.read_text())["verdict"] == result.verdict
    # stored with the model version: the gate and the service read it back
    assert stored_audit(result.model, result.version, REPORT_FILE) == page
    tags = MlflowClient().get_model_version(result.model, result.version).tags
    assert tags[VERDICT_TAG] == result.verdict

    # the browser decodes every embedded image (their sizes written into the page for reading)
    probe = tmp_path / "probe.html"
    probe.write_text(
        page.replace(
            "</body>",
            "<script>window.addEventListener('load', () => document.body.dataset.images ="
            " [...document.images].map(i => i.naturalWidth).join(','));</script></body>",
        )
    )
    done = _headless(tmp_path / "profile", "--dump-dom", probe.as_uri())
    assert done.returncode == 0, done.stderr[-2000:]
    dom = done.stdout
    widths = [int(w) for w in re.search(r'data-images="([0-9,]+)"', dom).group(1).split(",")]
    assert len(widths) >= 10 and min(widths) > 100, widths
    for section in ("summary", "explanations", "groups", "proxies", "drift", "kpis", "card"):
        assert f'id="{section}"' in dom, section
    verdict = re.search(r'id="verdict">(.*?)</div>', dom, re.S).group(1)
    assert {"pass": "Pass", "watch": "Watch", "flag": "Flag"}[result.verdict] in verdict
    protected = re.search(r'id="protected-inputs">(.*?)<', dom).group(1)
    assert protected == "none"
    for name in result.features[:5]:
        assert name in dom
    assert "Model card" in dom and "Collection rate per week" not in dom  # plots are images

    shot = tmp_path / "report.png"
    done = _headless(
        tmp_path / "profile", f"--screenshot={shot}", "--window-size=1200,2600", report.as_uri()
    )
    assert done.returncode == 0 and shot.is_file(), done.stderr[-2000:]
    pixels = np.asarray(Image.open(shot).convert("L"))
    assert (pixels < 200).mean() > 0.02  # text and plots, not a blank page
    if os.environ.get("COBRANZA_REPORT_SCREENSHOT"):
        shutil.copy(shot, os.environ["COBRANZA_REPORT_SCREENSHOT"])


def test_the_gate_blocks_a_flagged_challenger_and_logs_the_override(registry: Registry) -> None:
    from pipelines.audit import audit_and_store
    from pipelines.evaluate import promote_challengers
    from pipelines.registry import (
        CHALLENGER,
        CHAMPION,
        PROPENSITY_MODEL,
        alias_version,
        open_registry,
        read_audit,
    )
    from pipelines.train import train_portfolio

    train_portfolio(registry.portfolio, registry.config, "", tracking_uri=registry.tracking_uri)
    open_registry(registry.tracking_uri)
    champion = alias_version(PROPENSITY_MODEL, CHAMPION)
    challenger = alias_version(PROPENSITY_MODEL, CHALLENGER)
    assert challenger is not None and champion is not None
    # the challenger's stored audit shows a bias (planted in its scores)
    result, _ = audit_and_store(
        registry.portfolio,
        registry.config,
        str(challenger.version),
        registry.root / "reports",
        tracking_uri=registry.tracking_uri,
        score_shift=older_debtors_pushed_down(registry.portfolio),
    )
    assert result.verdict == "flag"

    [decision] = promote_challengers(
        registry.portfolio, registry.config, "propensity", None, registry.tracking_uri
    )
    assert not decision.promoted and "audit flags" in decision.message
    assert "age_band" in decision.message
    assert alias_version(PROPENSITY_MODEL, CHAMPION).version == champion.version
    store = open_registry(registry.tracking_uri)
    refused = [e for e in read_audit(store) if e["action"] == "refused_promotion"]
    assert refused and refused[-1]["version"] == str(challenger.version)
    assert "audit flags" in refused[-1]["why"]

    reason = "Age effect reviewed with compliance: ticket COMP-118"
    promote_challengers(
        registry.portfolio,
        registry.config,
        "propensity",
        None,
        registry.tracking_uri,
        override_audit=reason,
    )
    overrides = [e for e in read_audit(store) if e["action"] == "audit_override"]
    assert len(overrides) == 1
    assert overrides[0]["why"] == reason and overrides[0]["version"] == str(challenger.version)
    assert overrides[0]["flags"] and overrides[0]["who"]
    last = read_audit(store)[-1]  # after the override, the metric comparison decided
    assert last["action"] in {"set_champion", "refused_promotion"}
    assert "audit flags" not in last["why"]
