"""Training, registry and promotion end to end: a real Feast store, a real MLflow tracking
store and registry (SQLite in tmp_path), a simulated portfolio with its truth."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import yaml

from pipelines.evaluate import Decision, promote_challengers
from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    NEXT_BEST_ACTION_MODEL,
    PROPENSITY_MODEL,
    alias_version,
    load_model,
    open_registry,
    read_audit,
    remove_alias,
)
from pipelines.train import TrainResult, prepare_data, train_portfolio
from pipelines.truth import truth_evaluation
from training.config import ExperimentConfig, load_experiment
from training.splits import TEST

pytestmark = [pytest.mark.integration, pytest.mark.slow]

SMALL = {
    "name": "test-full",
    "split": {"valid_periods": 4, "test_periods": 4},
    "lightgbm": {"n_estimators": 200, "learning_rate": 0.08, "num_leaves": 15},
    "search_space": {"num_leaves": {"low": 7, "high": 31, "integer": True}},
    "tuning": {"trials": 2},
}
WEAK = {
    "name": "test-weak",
    "split": {"valid_periods": 4, "test_periods": 4},
    "lightgbm": {"n_estimators": 3, "learning_rate": 0.05, "num_leaves": 2},
    "search_space": {"min_child_samples": {"low": 20, "high": 400, "integer": True}},
    "tuning": {"trials": 2},
    "train_next_best_action": False,
}


def experiment(tmp: Path, settings: dict[str, object]) -> tuple[ExperimentConfig, str]:
    path = tmp / f"{settings['name']}.yaml"
    path.write_text(yaml.safe_dump(settings))
    return load_experiment(path)


@dataclass
class Story:
    portfolio: Path
    tracking_uri: str
    weak: TrainResult
    full: TrainResult
    weak_again: TrainResult
    accepted: list[Decision]
    refused: list[Decision]
    aliases_after_refusal: dict[str, str]
    audit: list[dict[str, object]]


@pytest.fixture(scope="module")
def story(tmp_path_factory: pytest.TempPathFactory, featured_portfolio: Path) -> Story:
    root = tmp_path_factory.mktemp("training")
    portfolio = featured_portfolio
    uri = f"sqlite:///{root / 'mlflow' / 'mlflow.db'}"
    (root / "mlflow").mkdir()
    weak_config, weak_text = experiment(root, WEAK)
    full_config, full_text = experiment(root, SMALL)
    weak = train_portfolio(portfolio, weak_config, weak_text, tracking_uri=uri)
    full = train_portfolio(
        portfolio, full_config, full_text, tracking_uri=uri, truth_evaluation=truth_evaluation
    )
    accepted = promote_challengers(portfolio, full_config, "propensity", None, uri)
    weak_again = train_portfolio(portfolio, weak_config, weak_text, tracking_uri=uri)
    refused = promote_challengers(portfolio, full_config, "propensity", None, uri)
    store = open_registry(uri)
    aliases = {
        alias: str(getattr(alias_version(PROPENSITY_MODEL, alias), "version", None))
        for alias in (CHAMPION, CHALLENGER)
    }
    return Story(
        portfolio, uri, weak, full, weak_again, accepted, refused, aliases, read_audit(store)
    )


def test_first_model_becomes_champion_and_later_ones_challenger(story: Story) -> None:
    assert story.weak.versions == {"propensity": "1"}
    assert story.full.versions == {"propensity": "2", "next-best-action": "1"}
    first = story.audit[0]
    assert first["action"] == "set_champion" and first["version"] == "1"
    assert first["why"] == "first model: no champion yet" and first["who"]
    moves = [(e["model"], e["action"], e["version"]) for e in story.audit]
    assert (PROPENSITY_MODEL, "set_challenger", "2") in moves
    assert (NEXT_BEST_ACTION_MODEL, "set_champion", "1") in moves


def test_promotion_accepts_a_better_challenger_and_logs_why(story: Story) -> None:
    [decision] = story.accepted
    assert decision.promoted, decision.message
    assert decision.metrics["challenger"] > decision.metrics["champion"] + 0.002
    entry = next(e for e in story.audit if e["action"] == "set_champion" and e["version"] == "2")
    assert entry["previous_version"] == "1" and entry["metrics"]["metric"] == "roc_auc"
    assert "roc_auc" in entry["why"]


def test_promotion_refuses_a_worse_challenger(story: Story) -> None:
    [decision] = story.refused
    assert not decision.promoted
    assert decision.metrics["challenger"] < decision.metrics["champion"]
    assert story.aliases_after_refusal == {CHAMPION: "2", CHALLENGER: "3"}
    refusal = story.audit[-1]
    assert refusal["action"] == "refused_promotion" and refusal["version"] == "3"


def test_same_seed_and_data_give_the_same_metrics(story: Story) -> None:
    first, again = story.weak.metrics, story.weak_again.metrics
    assert first.keys() == again.keys()
    for key, value in first.items():
        assert value == pytest.approx(again[key], rel=1e-12, nan_ok=True), key


def test_registered_model_loads_by_alias_and_predicts_as_in_training(story: Story) -> None:
    import mlflow.pyfunc

    open_registry(story.tracking_uri)
    config = ExperimentConfig.model_validate(SMALL)
    prepared = prepare_data(story.portfolio, config)
    test = prepared.propensity[prepared.propensity["split"] == TEST].head(300)
    trained = story.full.models["propensity"]
    loaded, version = load_model(PROPENSITY_MODEL, CHAMPION)
    assert str(version.version) == "2"
    expected = trained.predict_frame(test)
    pd.testing.assert_frame_equal(loaded.predict_frame(test), expected)
    # through MLflow's pyfunc interface and its signature, as any MLflow client would
    pyfunc = mlflow.pyfunc.load_model(f"models:/{PROPENSITY_MODEL}@{CHAMPION}")
    plain = test[trained.feature_names_].reset_index(drop=True)  # as a client holds them
    plain = plain.astype(dict.fromkeys(trained.categorical, str)).astype(
        {name: float for name in trained.feature_names_ if name not in trained.categorical}
    )
    kinds = {spec.name: str(spec.type) for spec in pyfunc.metadata.get_input_schema().inputs}
    assert {kinds[name] for name in trained.categorical} == {"DataType.string"}
    numeric = {kinds[n] for n in trained.feature_names_ if n not in trained.categorical}
    assert numeric == {"DataType.double"}  # trained on float32, signed for what clients send
    served = pyfunc.predict(plain)
    np.testing.assert_allclose(served["p_payment_30d"], expected["p_payment_30d"], rtol=1e-9)
    # the action model too
    action_model, _ = load_model(NEXT_BEST_ACTION_MODEL, CHAMPION)
    rows = prepared.actions[prepared.actions["split"] == TEST].head(100)
    pd.testing.assert_frame_equal(
        action_model.predict_value(rows),
        story.full.models["next-best-action"].predict_value(rows),
    )


def test_numpy_fast_paths_equal_the_scikit_learn_path(story: Story) -> None:
    """Serving predicts from encoded matrices straight through the boosters and calibrators;
    the numbers must be those of the DataFrame and scikit-learn path the model was validated
    on."""
    from training.labels import ACTION_COLUMNS
    from training.model import calibrate, predict_calibrated

    config = ExperimentConfig.model_validate(SMALL)
    prepared = prepare_data(story.portfolio, config)
    test = prepared.propensity[prepared.propensity["split"] == TEST].head(200)
    model = story.full.models["propensity"]
    reference = model.calibrator_.predict_proba(model.encoder_.transform(test))[:, 1]
    np.testing.assert_array_equal(model.predict_frame(test)["p_payment_30d"], reference)
    for method in ("isotonic", "sigmoid"):
        valid = model.encoder_.transform(test)
        calibrated = calibrate(model.classifier_, valid, test["paid_30d"].to_numpy(), method)
        np.testing.assert_allclose(
            predict_calibrated(calibrated, model.classifier_, model.encoder_.to_array(test)),
            calibrated.predict_proba(valid)[:, 1],
            rtol=1e-12,
        )
    actions = story.full.models["next-best-action"]
    rows = test.head(30).reset_index(drop=True)
    n, k = len(rows), len(actions.actions_)
    grid = pd.concat(
        [
            rows.iloc[np.repeat(np.arange(n), k)]
            .reset_index(drop=True)
            .drop(columns=[c for c in ACTION_COLUMNS if c in rows.columns]),
            actions.actions_.iloc[np.tile(np.arange(k), n)].reset_index(drop=True),
        ],
        axis=1,
    ).assign(weekday=2)
    p = actions.contact_calibrator_.predict_proba(actions.contact_encoder_.transform(grid))[:, 1]
    reached = actions.value_reached_.predict(actions.value_encoder_.transform(grid))
    missed = actions.value_missed_.predict(actions.contact_encoder_.transform(grid))
    matrix = actions.action_matrix(*actions.encode_accounts(rows), 2, chunk_cells=k * 7)
    np.testing.assert_allclose(matrix["p_contact"].ravel(), p, rtol=1e-12)
    # actions the value model cannot tell apart are predicted once, with the same numbers
    np.testing.assert_allclose(matrix["value_if_reached"].ravel(), reached, rtol=1e-12)
    np.testing.assert_allclose(
        matrix["expected_net"].ravel(), p * reached + (1 - p) * missed, rtol=1e-9, atol=1e-9
    )
    blocked = {"sms": np.arange(n) % 2 == 0}
    best = actions.best_actions(rows, 2, blocked)
    assert not ((best["channel"] == "sms") & blocked["sms"]).any()
    not_sms = (actions.actions_["channel"] != "sms").to_numpy()
    allowed_max = np.where(
        blocked["sms"],
        matrix["expected_net"][:, not_sms].max(axis=1),
        matrix["expected_net"].max(axis=1),
    )
    np.testing.assert_array_equal(best["expected_net"].to_numpy(), allowed_max)


def test_run_logs_what_the_issue_asks_for(story: Story) -> None:
    import mlflow
    from mlflow.tracking import MlflowClient

    open_registry(story.tracking_uri)
    run = mlflow.get_run(story.full.run_id)
    assert run.data.tags["feature_service"] == "debtor_scoring_v1"
    assert len(run.data.tags["training_set_hash"]) == 16
    assert run.data.params["lgbm_num_leaves"] and run.data.params["calibration"] == "isotonic"
    artifacts = {item.path for item in MlflowClient().list_artifacts(story.full.run_id)}
    assert {
        "experiment.yaml",
        "calibration.png",
        "feature_importance.png",
        "shap_summary.png",
        "model_card.md",
        "model_card_next_best_action.md",
        "mean_abs_shap.json",
    } <= artifacts
    card = Path(
        mlflow.artifacts.download_artifacts(run_id=story.full.run_id, artifact_path="model_card.md")
    ).read_text()
    assert "## Intended use" in card and "## Limits" in card and "test_rows" in card
    shap_means = json.loads(
        Path(
            mlflow.artifacts.download_artifacts(
                run_id=story.full.run_id, artifact_path="mean_abs_shap.json"
            )
        ).read_text()
    )
    assert "age_band" not in shap_means and "gender" not in shap_means
    assert max(shap_means.values()) > 0


def test_metrics_are_sane_and_compared_with_the_truth(story: Story) -> None:
    m = story.full.metrics
    assert m["test_roc_auc"] > 0.7
    assert m["test_brier"] <= m["test_brier_uncalibrated"] * 1.02  # calibration keeps Brier
    assert m["test_ece"] < 0.05
    assert 0 < m["truth_roc_auc_ratio"] < 1.05  # the true probabilities are the ceiling
    assert 0 < m["truth_contact_roc_auc_ratio"] < 1.05
    # the oracle collects the most; the learned policy beats contacting at random
    for other in ("learned", "logging", "largest_balance"):
        assert m["truth_collected_oracle"] > m[f"truth_collected_{other}"]
    assert m["truth_collected_learned"] > m["truth_collected_logging"]
    for name in ("ips", "snips", "dr"):
        assert m[f"nba_policy_{name}_ci_low"] <= m[f"nba_policy_{name}"]
        assert m[f"nba_policy_{name}"] <= m[f"nba_policy_{name}_ci_high"]


def test_registered_models_satisfy_the_protocols_serving_types_against(story: Story) -> None:
    from training.interfaces import ActionModel, RowEncoder, ScoringModel

    open_registry(story.tracking_uri)
    propensity, _ = load_model(PROPENSITY_MODEL, CHAMPION)
    actions, _ = load_model(NEXT_BEST_ACTION_MODEL, CHAMPION)
    assert isinstance(propensity, ScoringModel) and not isinstance(propensity, ActionModel)
    assert isinstance(actions, ActionModel) and not isinstance(actions, ScoringModel)
    assert isinstance(propensity.encoder_, RowEncoder)
    assert isinstance(actions.contact_encoder_, RowEncoder)


def test_concurrent_promotions_move_champion_once(story: Story, tmp_path: Path) -> None:
    """Two `promote` processes at once: the registry's lock serialises them, so the challenger
    is promoted and logged once, and the second finds nothing left to promote."""
    store = open_registry(story.tracking_uri)
    remove_alias(store, PROPENSITY_MODEL, CHAMPION, "test: leave the challenger unopposed")
    challenger = str(alias_version(PROPENSITY_MODEL, CHALLENGER).version)
    before = len(read_audit(store))
    experiment_file = tmp_path / "full.yaml"
    experiment_file.write_text(yaml.safe_dump(SMALL))
    command = [
        str(Path(sys.executable).with_name("cobranza")),
        "promote",
        "--data",
        str(story.portfolio),
        "--experiment",
        str(experiment_file),
        "--which",
        "propensity",
        "--tracking-uri",
        story.tracking_uri,
        "--reports",
        str(tmp_path / "reports"),
    ]
    processes = [
        subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    outputs = [process.communicate(timeout=600) for process in processes]
    assert all(process.returncode == 0 for process in processes), outputs
    assert sum("is champion (none before)" in out for out, _ in outputs) == 1
    assert sum("no challenger to promote" in out for out, _ in outputs) == 1
    moves = [e for e in read_audit(store)[before:] if e["action"] == "set_champion"]
    assert [(e["model"], e["version"]) for e in moves] == [(PROPENSITY_MODEL, challenger)]
    assert str(alias_version(PROPENSITY_MODEL, CHAMPION).version) == challenger
