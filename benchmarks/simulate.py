"""Benchmark: simulate a portfolio and validate it; report wall time, peak memory and rows.

    .venv/bin/python -m benchmarks.simulate --accounts 1000000

Writes a JSON record to benchmarks/results/ and prints it. Peak memory is the maximum resident
set size of this process (simulation and writing), then of a fresh validation process.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"

_VALIDATE = """
import json, resource, sys, time
from pipelines.portfolio import validate_portfolio
t = time.perf_counter()
result = validate_portfolio(sys.argv[1])
print(json.dumps({"validate_seconds": time.perf_counter() - t,
                  "validate_peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "reconciles": result.reconciles, "quarantined_rows": result.quarantined_rows}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--accounts", type=int, default=1_000_000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path, default=None, help="portfolio folder (default: temp)")
    args = parser.parse_args()

    from pipelines.simulate import simulate_to_folder
    from simulator.engine import SimulationConfig

    with tempfile.TemporaryDirectory() as scratch:
        folder = args.out or Path(scratch) / "portfolio"
        started = time.perf_counter()
        manifest = simulate_to_folder(
            SimulationConfig(accounts=args.accounts, seed=args.seed), folder, overwrite=True
        )
        simulate_seconds = time.perf_counter() - started
        simulate_peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
        size = sum(p.stat().st_size for p in Path(folder).rglob("*.parquet"))
        check = subprocess.run(
            [sys.executable, "-c", _VALIDATE, str(folder)],
            capture_output=True,
            text=True,
            check=True,
        )
        validation = json.loads(check.stdout.strip().splitlines()[-1])

    rows = manifest["rows"]
    record = {
        "benchmark": "simulate",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {len(__import__('os').sched_getaffinity(0))} cores",
        "accounts": args.accounts,
        "seed": args.seed,
        "rows": rows,
        "events": sum(v for k, v in rows.items() if k not in ("debtors", "accounts")),
        "simulate_seconds": round(simulate_seconds, 1),
        "simulate_peak_mib": round(simulate_peak),
        "parquet_mib": round(size / 2**20),
        **{k: round(v, 1) if isinstance(v, float) else v for k, v in validation.items()},
    }
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / f"simulate_{args.accounts}.json"
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
