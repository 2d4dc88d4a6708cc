"""The whole path at a portfolio size, step by step, as a user runs it: `cobranza` commands.

    .venv/bin/python -m benchmarks.scale --accounts 100000 [--seed 3] [--folder DIR]
        [--steps simulate,validate,features,train] [--trials 1] [--experiment FILE]
        [--reference]

Each step is one `cobranza` command in its own process, so its wall time and peak memory
(the process's maximum resident set, from `wait4`) are its own:
- simulate: `cobranza simulate --accounts N --seed S` (a year of history);
- validate: `cobranza validate`;
- features: `cobranza features build --every 7d` (weekly snapshots);
- materialize: `cobranza features materialize` (the embedded online store);
- train: `cobranza train --trials T` with the experiment (the built-in one by default), then
  the run's quality figures read back from MLflow: test ROC AUC, the ratios to the simulator's
  truth ceilings, contactability AUC, calibration error, and the rows it trained on.
`--reference` also trains the same experiment on every row (no thinning) and records its
quality, the yardstick the thinned model must stay within 0.005 of.

Steps not named are not run; a step already recorded for this size is replaced, others kept.
The portfolio lives under /tmp (never in the repository). Writes
benchmarks/results/scale_<N>.json and prints a table.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import yaml

from benchmarks.measure import load_average, machine

RESULTS = Path(__file__).parent / "results"
CLI = Path(sys.executable).with_name("cobranza")
STEPS = ("simulate", "validate", "features", "materialize", "train")
QUALITY = (
    "test_roc_auc",
    "test_ece",
    "truth_roc_auc_ratio",
    "truth_roc_auc_ceiling",
    "nba_contact_roc_auc",
    "truth_contact_roc_auc_ratio",
    "nba_policy_dr",
    "truth_collected_learned",
    "truth_collected_oracle",
)


def run_step(command: list[str], log: Path) -> dict[str, Any]:
    """Run one command; its wall time, peak resident memory and exit status."""
    started = time.perf_counter()
    load = load_average()
    with log.open("w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
    seconds = time.perf_counter() - started
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise SystemExit(f"{' '.join(command)} failed with {code}; see {log}")
    return {
        "command": " ".join(str(part).replace(str(CLI), "cobranza") for part in command),
        "seconds": round(seconds, 1),
        "peak_mib": round(usage.ru_maxrss / 1024),
        "cpu_seconds": round(usage.ru_utime + usage.ru_stime, 1),
        "load_start": load,
    }


def _quality(tracking_uri: str, log: Path) -> dict[str, Any]:
    """The metrics of the MLflow run `cobranza train` reported in its log."""
    from mlflow.tracking import MlflowClient

    line = next(line for line in log.read_text().splitlines() if line.startswith("MLflow run"))
    run = MlflowClient(tracking_uri).get_run(line.split()[2].rstrip(";"))
    metrics = run.data.metrics
    quality = {name: round(metrics[name], 4) for name in QUALITY if name in metrics}
    for key in ("train_rows", "train_rows_represented", "valid_rows", "test_rows"):
        if key in run.data.params:
            quality[key] = int(run.data.params[key])
    return quality


def train(
    folder: Path, work: Path, trials: int, experiment: Path | None, whole: bool, name: str
) -> dict[str, Any]:
    """`cobranza train` on the portfolio (every row when `whole`), with its quality."""
    config = yaml.safe_load(experiment.read_text()) if experiment else {}
    if whole:
        config["sampling"] = {"max_training_rows": None, "max_training_contacts": None}
    config_file = work / f"{name}.yaml"
    config_file.write_text(yaml.safe_dump(config))
    tracking = f"sqlite:///{work / f'{name}.db'}"
    log = work / f"{name}.log"
    command = [str(CLI), "train", "--data", str(folder), "--trials", str(trials)]
    command += ["--experiment", str(config_file), "--tracking-uri", tracking]
    result = run_step(command, log)
    result["quality"] = _quality(tracking, log)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--accounts", type=int, required=True)
    parser.add_argument("--seed", type=int, default=3)
    parser.add_argument("--folder", type=Path, default=None)
    parser.add_argument("--steps", default=",".join(s for s in STEPS if s != "materialize"))
    parser.add_argument("--trials", type=int, default=1)
    parser.add_argument("--experiment", type=Path, default=None)
    parser.add_argument("--reference", action="store_true")
    args = parser.parse_args()
    steps = [step.strip() for step in args.steps.split(",") if step.strip()]
    unknown = sorted(set(steps) - set(STEPS))
    if unknown:
        parser.error(f"unknown steps {unknown}; choose from {', '.join(STEPS)}")
    work = Path(tempfile.gettempdir()) / f"cobranza_scale_{args.accounts}"
    work.mkdir(exist_ok=True)
    folder = args.folder or work / "portfolio"
    path = RESULTS / f"scale_{args.accounts}.json"
    record: dict[str, Any] = json.loads(path.read_text()) if path.is_file() else {"steps": {}}
    record.update(
        {
            "benchmark": "scale",
            "accounts": args.accounts,
            "seed": args.seed,
            "machine": machine(["lightgbm", "pandas", "pyarrow", "feast", "mlflow"]),
        }
    )
    commands = {
        "simulate": [
            str(CLI), "simulate", "--accounts", str(args.accounts), "--seed", str(args.seed),
            "--out", str(folder), "--overwrite",
        ],
        "validate": [str(CLI), "validate", str(folder)],
        "features": [str(CLI), "features", "build", str(folder), "--every", "7d"],
        "materialize": [str(CLI), "features", "materialize", str(folder)],
    }  # fmt: skip
    for step in steps:
        print(f"{datetime.now(UTC):%H:%M:%S} {step} ...", flush=True)
        if step == "train":
            result = train(folder, work, args.trials, args.experiment, False, "train")
            if args.reference:
                print(f"{datetime.now(UTC):%H:%M:%S} train on every row ...", flush=True)
                reference = train(folder, work, args.trials, args.experiment, True, "reference")
                result["reference_quality"] = reference["quality"]
                result["reference_seconds"] = reference["seconds"]
                result["reference_peak_mib"] = reference["peak_mib"]
        else:
            result = run_step(commands[step], work / f"{step}.log")
        result["when"] = datetime.now(UTC).isoformat(timespec="seconds")
        record["steps"][step] = result
        path.write_text(json.dumps(record, indent=1) + "\n")
        print(f"  {result['seconds']} s, peak {result['peak_mib']} MiB", flush=True)
    print(json.dumps(record["steps"], indent=1))


if __name__ == "__main__":
    main()
