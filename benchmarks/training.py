"""Benchmark training and explaining the propensity model through the project's own code.

    .venv/bin/python -m benchmarks.training [--accounts 100000] [--rows 1000000]
        [--shap-rows 10000] [--portfolio DIR]

Stages, each in a fresh process so peak memory is its own:
1. prepare: simulate a portfolio and build weekly feature snapshots (unless DIR already has
   snapshots), then `pipelines.train.prepare_data` with the default experiment; keep the time
   split and sample training rows so that train + valid hold `--rows` rows; the test window is
   kept whole. The frame is written next to the portfolio (under /tmp), never into the repo;
2. fit: `training.fit.fit_propensity` with the default LightGBM parameters on 2 threads (wall
   time split into encoding, classifier, calibration and amount model; peak memory sampled
   from /proc/self/status during the fit, and the process's ru_maxrss); test-window metrics;
3. shap: on `--shap-rows` test rows, SHAP's TreeExplainer against LightGBM's `pred_contrib`
   (`PropensityModel.explain`): times, agreement and additivity against the raw log-odds;
   reason codes for every row; one-row explanation latency.
Every stage records the load averages at its start and end (others share this machine).
Writes benchmarks/results/training_<rows>.json and prints a summary table.
"""

from __future__ import annotations

import argparse
import json
import pickle
import resource
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import load_average, machine, percentiles_ms

RESULTS = Path(__file__).parent / "results"
THREADS = 2
SEED = 0
ONE_ROW_CALLS = 1000
REPEATS = 3  # timings of the 10,000-row explanations: median of this many runs


# ----- measuring ------------------------------------------------------------------------------
def _maxrss_mib() -> int:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _rss_mib() -> float:
    with open("/proc/self/status") as status:
        for line in status:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


class RssSampler:
    """Peak resident memory (native allocations included) between start and stop, read from
    /proc/self/status every `interval` seconds on a background thread."""

    def __init__(self, interval: float = 0.02) -> None:
        self.interval = interval
        self.peak = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, _rss_mib())
            self._stop.wait(self.interval)

    def __enter__(self) -> RssSampler:
        self.peak = _rss_mib()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, _rss_mib())


@contextmanager
def _timed_calls(module: Any, name: str, key: Callable[..., str], into: dict) -> Iterator[None]:
    """Wrap `module.name` so every call adds its wall time to `into[key(*args)]`."""
    original = getattr(module, name)

    def wrapper(*args: Any, **kwargs: Any) -> Any:
        started = time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            label = key(*args, **kwargs)
            into[label] = into.get(label, 0.0) + time.perf_counter() - started

    setattr(module, name, wrapper)
    try:
        yield
    finally:
        setattr(module, name, original)


def _median_run(function: Callable[[], Any], repeats: int) -> tuple[Any, list[float]]:
    seconds, result = [], None
    for _ in range(repeats):
        started = time.perf_counter()
        result = function()
        seconds.append(time.perf_counter() - started)
    return result, seconds


# ----- files of a run (next to the portfolio, under /tmp) -------------------------------------
def _work(folder: Path, rows: int) -> dict[str, Path]:
    work = folder / "benchmark_training"
    return {
        "frame": work / f"propensity_{rows}.parquet",
        "meta": work / f"propensity_{rows}.json",
        "model": work / f"model_{rows}.pkl",
    }


def _has_snapshots(folder: Path) -> bool:
    from pipelines.feature_store import snapshot_times

    return (folder / "accounts.parquet").is_file() and bool(snapshot_times(folder))


def _manifest(folder: Path) -> dict:
    path = folder / "manifest.json"
    return json.loads(path.read_text()) if path.is_file() else {}


# ----- stages ---------------------------------------------------------------------------------
def stage_prepare(folder: Path, accounts: int, rows: int) -> dict:
    from pipelines.features_build import build_snapshots
    from pipelines.simulate import simulate_to_folder
    from pipelines.train import prepare_data
    from simulator.engine import SimulationConfig
    from training.config import ExperimentConfig
    from training.splits import TEST, TRAIN, VALID

    result: dict[str, Any] = {"load_start": load_average()}
    if _has_snapshots(folder):
        result["portfolio"] = "reused (already had feature snapshots)"
    else:
        if not (folder / "accounts.parquet").is_file():
            started = time.perf_counter()
            simulate_to_folder(SimulationConfig(accounts=accounts, seed=1), folder, overwrite=True)
            result["simulate_seconds"] = round(time.perf_counter() - started, 1)
        started = time.perf_counter()
        build_snapshots(folder, None, None, "7d")
        result["build_snapshots_seconds"] = round(time.perf_counter() - started, 1)
        result["portfolio"] = "simulated and built here"
    manifest = _manifest(folder)
    result["accounts"] = int(manifest.get("accounts", 0))
    result["seed"] = manifest.get("seed")

    # The default experiment; the next-best-action join is skipped only because this
    # benchmark does not use it (the propensity frame is the same either way).
    config = ExperimentConfig().model_copy(update={"train_next_best_action": False})
    started = time.perf_counter()
    prepared = prepare_data(folder, config)
    result["prepare_data_seconds"] = round(time.perf_counter() - started, 1)
    frame = prepared.propensity
    counts = frame["split"].value_counts()
    available = {part: int(counts.get(part, 0)) for part in (TRAIN, VALID, TEST)}
    result["snapshot_rows_labelled"] = available
    result["as_of_times"] = int(frame["event_timestamp"].nunique())
    result["split"] = prepared.split.as_dict() if prepared.split is not None else None
    train_valid = available[TRAIN] + available[VALID]
    if train_valid < rows:
        needed = -(-int(result["accounts"] * rows / train_valid * 1.05) // 10_000) * 10_000
        raise SystemExit(
            f"{folder}: only {train_valid:,} train + valid rows for {result['accounts']:,} "
            f"accounts; {rows:,} are needed: rerun with --accounts {needed} and a new --portfolio"
        )
    if available[VALID] >= rows:
        raise SystemExit(f"the validation window alone has {available[VALID]:,} rows")
    # Keep the time split: every validation and test row, a sample of the training rows.
    train_index = np.flatnonzero((frame["split"] == TRAIN).to_numpy())
    keep_train = np.random.default_rng(SEED).choice(
        train_index, rows - available[VALID], replace=False
    )
    keep = np.sort(np.concatenate([keep_train, np.flatnonzero(frame["split"] != TRAIN)]))
    frame = frame.iloc[keep].reset_index(drop=True)
    counts = frame["split"].value_counts()
    result["rows_used"] = {part: int(counts.get(part, 0)) for part in (TRAIN, VALID, TEST)}
    files = _work(folder, rows)
    files["frame"].parent.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(files["frame"], index=False)
    files["meta"].write_text(
        json.dumps(
            {
                "features": prepared.features,
                "categorical": prepared.categorical,
                "dtypes": {name: str(dtype) for name, dtype in frame.dtypes.items()},
            }
        )
    )
    result["peak_mib"] = _maxrss_mib()
    result["load_end"] = load_average()
    return result


def _read_frame(folder: Path, rows: int, test_only: bool = False) -> tuple[Any, dict]:
    import pandas as pd

    files = _work(folder, rows)
    meta = json.loads(files["meta"].read_text())
    filters = [("split", "==", "test")] if test_only else None
    frame = pd.read_parquet(files["frame"], filters=filters)
    changed = [
        name
        for name, dtype in frame.dtypes.items()
        if meta["dtypes"].get(name) not in (str(dtype), None)
    ]
    if changed:
        raise SystemExit(f"columns changed dtype through parquet: {changed[:10]}")
    return frame, meta


def stage_fit(folder: Path, rows: int) -> dict:
    from training import model as model_module
    from training.config import ExperimentConfig
    from training.fit import evaluate_propensity, fit_propensity
    from training.model import FrameEncoder
    from training.splits import TEST, TRAIN, VALID

    config = ExperimentConfig()
    started = time.perf_counter()
    frame, meta = _read_frame(folder, rows)
    read_seconds = time.perf_counter() - started
    features, categorical = meta["features"], meta["categorical"]
    params = dict(config.lightgbm)
    parts: dict[str, float] = {}

    def kind(estimator: Any, *args: Any, **kwargs: Any) -> str:
        return "classifier" if type(estimator).__name__ == "LGBMClassifier" else "amount_model"

    rss_before = _rss_mib()
    load_start, cpu_start = load_average(), _cpu_seconds()
    with (
        _timed_calls(model_module, "_fit_with_early_stopping", kind, parts),
        _timed_calls(model_module, "calibrate", lambda *a, **k: "calibration", parts),
        _timed_calls(FrameEncoder, "fit", lambda *a, **k: "encoding", parts),
        _timed_calls(FrameEncoder, "transform", lambda *a, **k: "encoding", parts),
        RssSampler() as rss,
    ):
        started = time.perf_counter()
        model = fit_propensity(frame, features, categorical, config, params, threads=THREADS)
        fit_seconds = time.perf_counter() - started
    cpu_seconds = _cpu_seconds() - cpu_start
    load_end = load_average()

    test = frame[frame["split"] == TEST]
    started = time.perf_counter()
    metrics = evaluate_propensity(model, test, config.horizon_days)
    evaluate_seconds = time.perf_counter() - started
    with open(_work(folder, rows)["model"], "wb") as out:
        pickle.dump(model, out, protocol=pickle.HIGHEST_PROTOCOL)
    counts = frame["split"].value_counts()
    booster = model.classifier_.booster_
    return {
        "rows_train": int(counts.get(TRAIN, 0)),
        "rows_valid": int(counts.get(VALID, 0)),
        "rows_test": int(counts.get(TEST, 0)),
        "features": len(features),
        "categorical_features": len(categorical),
        "params": params,
        "threads": THREADS,
        "read_seconds": round(read_seconds, 1),
        "fit_seconds": round(fit_seconds, 1),
        "fit_parts_seconds": {name: round(value, 1) for name, value in parts.items()},
        "fit_cpu_seconds": round(cpu_seconds, 1),
        "best_iteration": int(model.classifier_.best_iteration_),
        "classifier_trees_kept": int(booster.num_trees()),
        "amount_best_iteration": (
            int(model.amount_model_.best_iteration_) if model.amount_model_ is not None else None
        ),
        "rss_before_fit_mib": round(rss_before),
        "peak_rss_during_fit_mib": round(rss.peak),
        "peak_mib": _maxrss_mib(),
        "evaluate_seconds": round(evaluate_seconds, 1),
        "test_metrics": {key: round(float(value), 4) for key, value in metrics.items()},
        "load_start": load_start,
        "load_end": load_end,
    }


def stage_shap(folder: Path, rows: int, shap_rows: int) -> dict:
    from training.config import ExperimentConfig
    from training.explain import reasons_for_rows, tree_explainer_values
    from training.model import contributions

    config = ExperimentConfig()
    with open(_work(folder, rows)["model"], "rb") as source:
        model = pickle.load(source)
    test, _ = _read_frame(folder, rows, test_only=True)
    sample = test.sample(min(shap_rows, len(test)), random_state=SEED).reset_index(drop=True)
    del test
    booster = model.classifier_.booster_
    started = time.perf_counter()
    import shap

    import_seconds = time.perf_counter() - started
    result: dict[str, Any] = {
        "rows": len(sample),
        "features": len(model.feature_names_),
        "shap_import_seconds": round(import_seconds, 1),
        "load_start": load_average(),
    }

    started = time.perf_counter()
    encoded = model.encoder_.transform(sample)
    result["encode_seconds"] = round(time.perf_counter() - started, 2)
    model.explain(sample.head(100))  # warm up both paths once
    tree_explainer_values(booster, encoded.head(100))

    # Interleaved repeats, so a burst of load from other processes hits both alike.
    shap_runs, contrib_runs, explain_runs = [], [], []
    for _ in range(REPEATS):
        shap_values, seconds = _median_run(lambda: tree_explainer_values(booster, encoded), 1)
        shap_runs += seconds
        (values, base), seconds = _median_run(lambda: contributions(booster, encoded), 1)
        contrib_runs += seconds
        explained, seconds = _median_run(lambda: model.explain(sample), 1)
        explain_runs += seconds
    _, construct = _median_run(lambda: shap.TreeExplainer(booster), REPEATS)
    raw = booster.predict(encoded, raw_score=True)
    same_as_explain = float(np.max(np.abs(explained[0] - values)))
    difference = float(np.max(np.abs(shap_values - values)))
    additivity = float(np.max(np.abs(values.sum(axis=1) + base - raw)))
    shap_additivity = float(np.max(np.abs(shap_values.sum(axis=1) + base - raw)))
    shap_s, contrib_s = float(np.median(shap_runs)), float(np.median(contrib_runs))
    agree = difference <= 1e-9 and additivity <= 1e-9
    result.update(
        {
            "tree_explainer_seconds": round(shap_s, 2),
            "tree_explainer_runs": [round(s, 2) for s in shap_runs],
            "tree_explainer_construct_seconds": round(float(np.median(construct)), 2),
            "pred_contrib_seconds": round(contrib_s, 2),
            "pred_contrib_runs": [round(s, 2) for s in contrib_runs],
            "model_explain_seconds": round(float(np.median(explain_runs)), 2),
            "tree_explainer_over_pred_contrib": round(shap_s / contrib_s, 2),
            "max_abs_difference": difference,
            "model_explain_vs_contributions_max_abs": same_as_explain,
            "additivity_max_abs_error": additivity,
            "tree_explainer_additivity_max_abs_error": shap_additivity,
            "agree": agree,
            "used": "pred_contrib" if agree else "none: the two disagree, investigate",
            "classifier_trees": int(booster.num_trees()),
            "booster_best_iteration": int(booster.best_iteration),
        }
    )

    started = time.perf_counter()
    reasons = reasons_for_rows(values, sample, model.feature_names_, top=3)
    result["reason_codes_seconds"] = round(time.perf_counter() - started, 2)
    result["reasons_per_row_mean"] = round(float(np.mean([len(r) for r in reasons])), 2)
    result["reason_example"] = [reason.as_dict() for reason in reasons[0]]

    # One-row latency for serving: the whole call, and its two halves.
    calls = min(ONE_ROW_CALLS, len(sample))
    single = [sample.iloc[[i]] for i in range(calls)]
    single_encoded = [encoded.iloc[[i]] for i in range(calls)]
    for row in single[:20]:
        model.explain(row)
    whole, encode_only, contrib_one_thread = [], [], []
    for row, row_encoded in zip(single, single_encoded, strict=True):
        begin = time.perf_counter()
        model.explain(row)
        whole.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        model.encoder_.transform(row)
        encode_only.append(time.perf_counter() - begin)
        begin = time.perf_counter()
        booster.predict(row_encoded, pred_contrib=True, num_threads=1)
        contrib_one_thread.append(time.perf_counter() - begin)
    result["one_row_explain"] = {"calls": calls, **percentiles_ms(whole)}
    result["one_row_encode_only"] = percentiles_ms(encode_only)
    result["one_row_pred_contrib_encoded_1_thread"] = percentiles_ms(contrib_one_thread)
    result["horizon_days"] = config.horizon_days
    result["peak_mib"] = _maxrss_mib()
    result["load_end"] = load_average()
    return result


# ----- driver ---------------------------------------------------------------------------------
def _run_stage(args: list[str], timeout: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.training", *args],
        stdout=subprocess.PIPE,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        return {"error": f"exit status {done.returncode} (see stderr above)"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def _table(record: dict) -> list[tuple[str, str]]:
    prepare, fit, explain = (record.get(k, {}) for k in ("prepare", "fit", "shap"))
    lines: list[tuple[str, str]] = []
    if "rows_used" in prepare:
        used = prepare["rows_used"]
        lines.append(
            (
                "rows train / valid / test",
                f"{used['train']:,} / {used['valid']:,} / {used['test']:,} "
                f"(of {sum(prepare['snapshot_rows_labelled'].values()):,} labelled, "
                f"{prepare['accounts']:,} accounts)",
            )
        )
    if "fit_seconds" in fit:
        parts = ", ".join(f"{k} {v} s" for k, v in fit["fit_parts_seconds"].items())
        lines += [
            ("features (categorical)", f"{fit['features']} ({fit['categorical_features']})"),
            ("fit_propensity, 2 threads", f"{fit['fit_seconds']} s ({parts})"),
            ("fit CPU seconds", f"{fit['fit_cpu_seconds']} s"),
            (
                "best iteration (of 400)",
                f"{fit['best_iteration']} (amount model {fit['amount_best_iteration']})",
            ),
            (
                "peak RSS during fit / process",
                f"{fit['peak_rss_during_fit_mib'] / 1024:.2f} GiB / {fit['peak_mib'] / 1024:.2f}"
                f" GiB (before fit {fit['rss_before_fit_mib'] / 1024:.2f} GiB)",
            ),
            ("test ROC AUC", str(fit["test_metrics"].get("test_roc_auc"))),
            ("load average during fit", f"{fit['load_start']} -> {fit['load_end']}"),
        ]
    if "pred_contrib_seconds" in explain:
        lines += [
            (
                f"SHAP TreeExplainer, {explain['rows']:,} rows",
                f"{explain['tree_explainer_seconds']} s "
                f"(constructor {explain['tree_explainer_construct_seconds']} s)",
            ),
            (
                f"LightGBM pred_contrib, {explain['rows']:,} rows",
                f"{explain['pred_contrib_seconds']} s",
            ),
            ("TreeExplainer / pred_contrib", f"{explain['tree_explainer_over_pred_contrib']} x"),
            (
                "max |difference|, additivity error",
                f"{explain['max_abs_difference']:.3g}, {explain['additivity_max_abs_error']:.3g}"
                f" -> used: {explain['used']}",
            ),
            (f"reason codes, {explain['rows']:,} rows", f"{explain['reason_codes_seconds']} s"),
            (
                "one-row model.explain p50 / p99",
                f"{explain['one_row_explain']['p50_ms']} / "
                f"{explain['one_row_explain']['p99_ms']} ms",
            ),
            ("load average during SHAP", f"{explain['load_start']} -> {explain['load_end']}"),
        ]
    for stage in ("prepare", "fit", "shap"):
        if "error" in record.get(stage, {}):
            lines.append((stage, record[stage]["error"]))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--accounts", type=int, default=100_000, help="accounts to simulate")
    parser.add_argument("--rows", type=int, default=1_000_000, help="train + valid rows")
    parser.add_argument("--shap-rows", type=int, default=10_000, help="test rows to explain")
    parser.add_argument(
        "--portfolio",
        type=Path,
        default=None,
        help="portfolio folder, reused if it has feature snapshots "
        "(default /tmp/cobranza_training_<accounts>)",
    )
    parser.add_argument(
        "--stages",
        default="prepare,fit,shap",
        help="comma-separated stages to run (results merge into the same record)",
    )
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args()
    folder = args.portfolio or Path(f"/tmp/cobranza_training_{args.accounts}")

    if args.stage:
        stages = {
            "prepare": lambda: stage_prepare(folder, args.accounts, args.rows),
            "fit": lambda: stage_fit(folder, args.rows),
            "shap": lambda: stage_shap(folder, args.rows, args.shap_rows),
        }
        print(json.dumps(stages[args.stage]()))
        return

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"training_{args.rows}.json"
    record: dict = json.loads(out.read_text()) if out.is_file() else {}
    record.update(
        {
            "benchmark": "training",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join(["python -m benchmarks.training", *sys.argv[1:]]),
            "portfolio": str(folder),
            "machine": machine(("lightgbm", "shap", "scikit-learn", "pandas", "numpy", "pyarrow")),
        }
    )
    common = [
        "--portfolio",
        str(folder),
        "--accounts",
        str(args.accounts),
        "--rows",
        str(args.rows),
        "--shap-rows",
        str(args.shap_rows),
    ]
    for stage in ("prepare", "fit", "shap"):
        if stage in args.stages.split(","):
            load_start = load_average()
            record[stage] = _run_stage([*common, "--stage", stage], 3600)
            record[stage]["stage_load"] = [load_start, load_average()]
            print(json.dumps(record[stage]), flush=True)
            if "error" in record[stage]:
                break
    out.write_text(json.dumps(record, indent=2) + "\n")
    width = max((len(name) for name, _ in _table(record)), default=0)
    print(f"\ntraining benchmark ({record['when']}, {record['machine']['nproc']} cores) -> {out}")
    for name, value in _table(record):
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
