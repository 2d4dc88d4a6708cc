"""Benchmark the feature pipeline on a large simulated portfolio.

    .venv/bin/python -m benchmarks.features --portfolio /tmp/p1m [--accounts 1000000]

Stages, each in a fresh process so peak memory is its own:
1. snapshot: one as-of snapshot of every account and debtor feature (time, peak memory), and
   the straightforward pandas baseline on the same data (time, same values, ratio);
2. training: point-in-time training set of 1,000,000 rows over weekly snapshots, with the direct
   as-of join, Feast's DuckDB offline store and Feast's default file (dask) offline store;
3. online: single-account reads from the SQLite online store, through our wrapper and raw Feast.
Writes benchmarks/results/features_<accounts>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

RESULTS = Path(__file__).parent / "results"
AS_OF = "2025-10-06"


def _peak_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _read_tables(folder: Path) -> dict:
    """The columns the features read, as validation hands them over: references hold their
    parent's id categories (one copy of each id, not one per table)."""
    import pandas as pd

    from data_contracts.validation import share_parent_ids
    from features.snapshot import FEATURE_INPUTS

    tables: dict[str, pd.DataFrame] = {}
    for name, columns in FEATURE_INPUTS.items():  # parents first
        if (folder / f"{name}.parquet").is_file():
            tables[name] = pd.read_parquet(folder / f"{name}.parquet", columns=list(columns))
            tables = share_parent_ids(tables)  # each table's own copy of the ids freed now
    return tables


def stage_snapshot(folder: Path) -> dict:
    import pandas as pd

    from features.snapshot import feature_snapshots

    started = time.perf_counter()
    tables = _read_tables(folder)
    read_seconds = time.perf_counter() - started
    after_read = _peak_mib()
    as_of = pd.Timestamp(AS_OF, tz="UTC")
    started = time.perf_counter()
    accounts, debtors = feature_snapshots(tables, as_of)
    seconds = time.perf_counter() - started
    return {
        "read_seconds": round(read_seconds, 1),
        "snapshot_seconds": round(seconds, 1),
        "peak_mib_after_read": round(after_read),
        "peak_mib": round(_peak_mib()),
        "account_rows": len(accounts),
        "debtor_rows": len(debtors),
        "features": accounts.shape[1] - 2 + debtors.shape[1] - 2,
    }


def stage_baseline(folder: Path) -> dict:
    import pandas as pd

    from benchmarks.features_baseline import baseline_account_features
    from features.snapshot import account_features

    tables = _read_tables(folder)
    as_of = pd.Timestamp(AS_OF, tz="UTC")
    started = time.perf_counter()
    baseline = baseline_account_features(tables, as_of)
    seconds = time.perf_counter() - started
    peak = _peak_mib()
    ours = account_features(tables, as_of).set_index("account_id").loc[baseline["account_id"]]
    baseline = baseline.set_index("account_id")
    mismatched = [
        column
        for column in baseline.columns
        if not np.allclose(
            baseline[column].to_numpy(float),
            ours[column].to_numpy(float),
            equal_nan=True,
            atol=1e-6,
        )
    ]
    return {
        "baseline_seconds": round(seconds, 1),
        "baseline_peak_mib": round(peak),
        "baseline_features": baseline.shape[1],
        "baseline_mismatched_columns": mismatched,
    }


def stage_prepare_training(folder: Path) -> dict:
    import pandas as pd

    from pipelines.features_build import build_snapshots

    started = time.perf_counter()
    summary = build_snapshots(
        folder, pd.Timestamp("2025-09-01", tz="UTC"), pd.Timestamp("2025-10-27", tz="UTC"), "7D"
    )
    return {
        "build_seconds": round(time.perf_counter() - started, 1),
        "snapshots": len(summary.as_of),
        "snapshot_rows": summary.account_rows,
    }


def _entity_rows(folder: Path, rows: int):
    import pandas as pd

    accounts = pd.read_parquet(folder / "accounts.parquet", columns=["account_id", "debtor_id"])
    rng = np.random.default_rng(0)
    picked = accounts.iloc[rng.integers(0, len(accounts), rows)].reset_index(drop=True)
    start = pd.Timestamp("2025-09-01", tz="UTC")
    hours = rng.integers(0, 60 * 24, rows)
    return picked.assign(
        event_timestamp=start + pd.to_timedelta(hours, unit="h"), label=rng.integers(0, 2, rows)
    )


def stage_training(folder: Path, engine: str, rows: int) -> dict:
    from pipelines.feature_store import training_set

    entity_rows = _entity_rows(folder, rows)
    started = time.perf_counter()
    if engine == "feast_file":
        joined = _feast_file_store(folder, entity_rows)
    else:
        joined = training_set(folder, entity_rows, engine=engine)
    seconds = time.perf_counter() - started
    filled = (
        float(joined["current_balance"].notna().mean()) if "current_balance" in joined else None
    )
    return {
        "engine": engine,
        "seconds": round(seconds, 1),
        "rows_in": len(entity_rows),
        "rows_out": len(joined),
        "share_with_features": round(filled, 4) if filled is not None else None,
        "peak_mib": round(_peak_mib()),
    }


def _feast_file_store(folder: Path, entity_rows):
    """Feast's default file offline store (dask), on a separate registry."""
    from feast import FeatureStore
    from feast.infra.offline_stores.dask import DaskOfflineStoreConfig

    from features.repo.definitions import feature_repository
    from pipelines.feature_store import repo_config, snapshot_root

    config = repo_config(folder)
    config = config.model_copy(
        update={
            "offline_store": DaskOfflineStoreConfig(),
            "registry": str(Path(folder).resolve() / "feature_store" / "registry_file.db"),
        }
    )
    store = FeatureStore(config=config)
    store.apply(feature_repository(snapshot_root(folder).resolve()))
    service = store.get_feature_service("debtor_scoring_v1")
    return store.get_historical_features(entity_df=entity_rows, features=service).to_df()


def stage_online(folder: Path, requests: int, materialize: bool = True) -> dict:
    import pandas as pd

    from pipelines.feature_store import OnlineFeatures, materialize_latest, published_generation

    started = time.perf_counter()
    if materialize:
        materialize_latest(folder)
    materialize_seconds = time.perf_counter() - started if materialize else None
    accounts = pd.read_parquet(folder / "accounts.parquet", columns=["account_id", "debtor_id"])
    rng = np.random.default_rng(1)
    picked = accounts.iloc[rng.integers(0, len(accounts), requests)]
    reader = OnlineFeatures(folder)
    generation = published_generation(folder)
    assert generation is not None  # OnlineFeatures opened it
    online_file = generation.path
    rows = [{"account_id": int(a), "debtor_id": int(d)} for a, d in picked.itertuples(index=False)]
    for row in rows[:50]:
        reader.get([row])  # warm up
    timings = []
    for row in rows:
        begin = time.perf_counter()
        reader.get([row])
        timings.append(time.perf_counter() - begin)
    raw = []
    features = [f"account_features:{name}" for name in ("current_balance", "payments_sum_90d")]
    for row in rows:
        begin = time.perf_counter()
        reader.store.get_online_features(
            features=features, entity_rows=[{"account_id": row["account_id"]}]
        ).to_dict()
        raw.append(time.perf_counter() - begin)
    batch = [{"account_id": r["account_id"], "debtor_id": r["debtor_id"]} for r in rows[:1000]]
    begin = time.perf_counter()
    reader.get(batch)
    batch_seconds = time.perf_counter() - begin
    ms = np.array(timings) * 1e3
    raw_ms = np.array(raw) * 1e3
    return {
        "materialize_seconds": round(materialize_seconds, 1) if materialize_seconds else None,
        "online_db_gib": round(online_file.stat().st_size / 2**30, 1),
        "service_one_account_p50_ms": round(float(np.percentile(ms, 50)), 3),
        "service_one_account_p99_ms": round(float(np.percentile(ms, 99)), 3),
        "raw_two_features_p50_ms": round(float(np.percentile(raw_ms, 50)), 3),
        "raw_two_features_p99_ms": round(float(np.percentile(raw_ms, 99)), 3),
        "service_1000_accounts_ms": round(batch_seconds * 1e3, 1),
        "requests": requests,
    }


def _run_stage(args: list[str], timeout: int) -> dict:
    done = subprocess.run(
        [sys.executable, "-m", "benchmarks.features", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
    )
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        return {"error": lines[-1] if lines else f"exit status {done.returncode}"}
    return json.loads(done.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--portfolio", type=Path, required=True)
    parser.add_argument("--accounts", type=int, default=1_000_000, help="simulate if missing")
    parser.add_argument("--rows", type=int, default=1_000_000, help="training-set rows")
    parser.add_argument("--stage", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--engine", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--skip-file-store", action="store_true")
    parser.add_argument(
        "--stages",
        default="snapshot,baseline,prepare,training,online",
        help="comma-separated stages to run (results merge into the same record)",
    )
    args = parser.parse_args()
    folder = args.portfolio

    if args.stage:
        stages = {
            "snapshot": lambda: stage_snapshot(folder),
            "baseline": lambda: stage_baseline(folder),
            "prepare": lambda: stage_prepare_training(folder),
            "training": lambda: stage_training(folder, args.engine, args.rows),
            "online": lambda: stage_online(folder, 2000),
            "online_read": lambda: stage_online(folder, 5000, materialize=False),
        }
        print(json.dumps(stages[args.stage]()))
        return

    if not (folder / "accounts.parquet").is_file():
        from pipelines.simulate import simulate_to_folder
        from simulator.engine import SimulationConfig

        simulate_to_folder(SimulationConfig(accounts=args.accounts, seed=1), folder, overwrite=True)
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"features_{_accounts(folder)}.json"
    record: dict = json.loads(out.read_text()) if out.is_file() else {}
    record.update(
        {
            "benchmark": "features",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "accounts": _accounts(folder),
            "as_of": AS_OF,
        }
    )
    stages = args.stages.split(",")
    common = ["--portfolio", str(folder), "--rows", str(args.rows)]
    for stage, timeout in (("snapshot", 1800), ("baseline", 3600), ("prepare", 3600)):
        if stage in stages:
            record[stage] = _run_stage([*common, "--stage", stage], timeout)
            print(json.dumps(record[stage]), flush=True)
    if "snapshot_seconds" in record.get("snapshot", {}) and "baseline_seconds" in record.get(
        "baseline", {}
    ):
        record["baseline_over_ours"] = round(
            record["baseline"]["baseline_seconds"] / record["snapshot"]["snapshot_seconds"], 1
        )
    if "training" in stages:
        engines = ["direct", "feast"] + ([] if args.skip_file_store else ["feast_file"])
        record["training"] = []
        for engine in engines:
            try:
                result = _run_stage([*common, "--stage", "training", "--engine", engine], 1200)
            except subprocess.TimeoutExpired:
                result = {"engine": engine, "error": "no result within 20 minutes"}
            record["training"].append(result)
            print(json.dumps(result), flush=True)
    if "online" in stages:
        record["online"] = _run_stage([*common, "--stage", "online"], 7200)
        print(json.dumps(record["online"]), flush=True)
    if "online_read" in stages:  # reads only, on a settled store (no writes in flight)
        record["online_read"] = _run_stage([*common, "--stage", "online_read"], 1800)
        print(json.dumps(record["online_read"]), flush=True)
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


def _accounts(folder: Path) -> int:
    manifest = folder / "manifest.json"
    return int(json.loads(manifest.read_text())["accounts"]) if manifest.is_file() else 0


if __name__ == "__main__":
    main()
