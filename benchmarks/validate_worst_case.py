"""Benchmark: validation when nearly every row is quarantined (all accounts' ids shifted, so
every payment, contact, offer and promise is an orphan).

    .venv/bin/python -m benchmarks.validate_worst_case --portfolio /tmp/p1m

Writes benchmarks/results/validate_worst_case_<accounts>.json.
"""

from __future__ import annotations

import argparse
import json
import resource
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

RESULTS = Path(__file__).parent / "results"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--portfolio", type=Path, required=True)
    args = parser.parse_args()

    import pandas as pd

    from pipelines.portfolio import validate_portfolio

    with tempfile.TemporaryDirectory(dir=args.portfolio.parent) as scratch:
        folder = Path(scratch) / "orphans"
        folder.mkdir()
        for file in args.portfolio.glob("*"):
            if file.is_file():
                (folder / file.name).symlink_to(file.resolve())
        (folder / "accounts.parquet").unlink()
        accounts = pd.read_parquet(args.portfolio / "accounts.parquet")
        accounts["account_id"] += 10**9
        accounts.to_parquet(folder / "accounts.parquet")
        n_accounts = len(accounts)
        del accounts
        started = time.perf_counter()
        result = validate_portfolio(folder)
        seconds = time.perf_counter() - started
        record = {
            "benchmark": "validate_worst_case",
            "when": datetime.now(UTC).isoformat(timespec="seconds"),
            "accounts": n_accounts,
            "input_rows": sum(r.input_rows for r in result.reports.values()),
            "quarantined_rows": result.quarantined_rows,
            "reconciles": result.reconciles,
            "validate_seconds": round(seconds, 1),
            "peak_mib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024),
        }
        shutil.rmtree(folder / "quarantine", ignore_errors=True)
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / f"validate_worst_case_{n_accounts}.json").write_text(
        json.dumps(record, indent=2) + "\n"
    )
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
