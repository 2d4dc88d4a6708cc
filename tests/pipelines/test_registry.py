"""The registry under failures: a run's models registered as a pair, alias moves serialised by
the registry's lock (real MLflow SQLite store, real processes)."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pandas as pd
import pytest

from pipelines.registry import (
    CHALLENGER,
    CHAMPION,
    MODEL_NAMES,
    Store,
    alias_version,
    experiment_id,
    open_registry,
    read_audit,
    register_run,
)

pytestmark = [pytest.mark.integration]


def _log_run(
    store: Store, value: float, kinds: tuple[str, ...] = tuple(MODEL_NAMES)
) -> dict[str, str]:
    """One training run's logged models (tiny constant pyfunc models); their URIs by kind."""
    import mlflow
    import mlflow.pyfunc

    class Constant(mlflow.pyfunc.PythonModel):
        def predict(self, context, model_input, params=None):  # type: ignore[no-untyped-def]
            return pd.DataFrame({"value": [value] * len(model_input)})

    with mlflow.start_run(experiment_id=experiment_id(store, "registry-test")) as run:
        for kind in kinds:
            mlflow.pyfunc.log_model(name=kind, python_model=Constant(), pip_requirements=[])
    return {kind: f"runs:/{run.info.run_id}/{kind}" for kind in kinds}


@pytest.fixture
def store_uri(tmp_path: Path) -> str:
    (tmp_path / "mlflow").mkdir()
    return f"sqlite:///{tmp_path / 'mlflow' / 'mlflow.db'}"


def test_a_run_interrupted_between_registrations_moves_no_alias(store_uri: str) -> None:
    store = open_registry(store_uri)
    first = _log_run(store, 1.0)
    assert register_run(store, first, {}) == {"propensity": "1", "next-best-action": "1"}
    # the next run dies after registering its propensity model (its second model is missing)
    broken = {**_log_run(store, 2.0, ("propensity",)), "next-best-action": "runs:/gone/model"}
    with pytest.raises(Exception):  # noqa: B017 (MLflow's own error type for a missing run)
        register_run(store, broken, {})
    for kind, name in MODEL_NAMES.items():
        assert str(alias_version(name, CHAMPION).version) == "1", kind
        assert alias_version(name, CHALLENGER) is None, kind
    # a later complete run becomes the challenger pair; both of its models move together
    again = _log_run(store, 3.0)
    versions = register_run(store, again, {})
    assert versions == {"propensity": "3", "next-best-action": "2"}
    challengers = [alias_version(name, CHALLENGER) for name in MODEL_NAMES.values()]
    assert len({version.run_id for version in challengers}) == 1
    assert [e["action"] for e in read_audit(store)] == ["set_champion"] * 2 + ["set_challenger"] * 2


def test_alias_moves_wait_for_the_registry_lock(store_uri: str, tmp_path: Path) -> None:
    """A second process holding the lock delays a registration until it lets go."""
    store = open_registry(store_uri)
    holder = textwrap.dedent(
        f"""
        import json, sys, time
        from pipelines.registry import open_registry, registry_lock
        store = open_registry({store_uri!r})
        with registry_lock(store):
            print("locked", flush=True)
            time.sleep(2)
            with store.audit_path.open("a") as log:
                log.write(json.dumps({{"action": "holder_done"}}) + "\\n")
        """
    )
    with subprocess.Popen(
        [sys.executable, "-c", holder], stdout=subprocess.PIPE, text=True, cwd=tmp_path
    ) as process:
        assert process.stdout is not None and process.stdout.readline().strip() == "locked"
        register_run(store, _log_run(store, 1.0), {})
        assert process.wait(timeout=60) == 0
    actions = [json.loads(line)["action"] for line in store.audit_path.read_text().splitlines()]
    assert actions == ["holder_done", "set_champion", "set_champion"]


def test_models_are_logged_from_code_without_warnings(
    store_uri: str, caplog: pytest.LogCaptureFixture
) -> None:
    """No pickled-model, type-hint or pip warning: the model is logged from code with its
    fitted object as an artifact, and loads back as the same object."""
    import warnings

    import mlflow
    import mlflow.pyfunc
    import numpy as np

    from pipelines.registry import PROPENSITY_MODEL, load_model
    from pipelines.train import _log_model
    from training.model import PropensityModel

    rng = np.random.default_rng(3)
    frame = pd.DataFrame({"x1": rng.normal(size=600), "x2": rng.normal(size=600)})
    paid = (frame["x1"] + rng.normal(size=600) > 0).astype(int).to_numpy()
    amount = paid * 50.0
    params = {"n_estimators": 20, "num_leaves": 4, "min_child_samples": 5}
    model = PropensityModel(["x1", "x2"], params=params, threads=1).fit(
        frame[:400],
        paid[:400],
        amount=amount[:400],
        eval_set=(frame[400:], paid[400:], amount[400:]),
    )
    store = open_registry(store_uri)
    with warnings.catch_warnings(record=True) as caught, caplog.at_level("WARNING"):
        warnings.simplefilter("always")
        with mlflow.start_run(experiment_id=experiment_id(store, "registry-test")):
            uri = _log_model(model, frame[:50], model.predict_frame(frame[:50]))
        register_run(store, {"propensity": uri}, {})
    said = [r.getMessage() for r in caplog.records] + [str(w.message) for w in caught]
    for warning in ("CloudPickle", "type hints", "pip version"):
        assert not [text for text in said if warning in text], warning
    assert not [r for r in caplog.records if r.name.startswith("mlflow")]
    loaded, version = load_model(PROPENSITY_MODEL, CHAMPION)
    assert isinstance(loaded, PropensityModel) and str(version.version) == "1"
    pd.testing.assert_frame_equal(loaded.predict_frame(frame), model.predict_frame(frame))
    served = mlflow.pyfunc.load_model(f"models:/{PROPENSITY_MODEL}@{CHAMPION}").predict(frame)
    np.testing.assert_allclose(served["p_payment_30d"], model.predict_frame(frame)["p_payment_30d"])
