"""Latency through hot swaps: a new champion pair, and a new materialization, under load.

    .venv/bin/python -m benchmarks.swap [--portfolio data/demo] [--workers 2] [--rate 200]

Starts the real `cobranza serve` (watching the registry and the online store every second),
waits until it is ready and every account's reason codes are precomputed, then sends one
account per request with reasons at `--rate` requests/s (open loop: latency counts from the
scheduled send time). After `--warmup` seconds (the first connections, caches; not part of the
baseline) and `--before` more (the baseline):
1. registers a copy of each champion (same run and artifacts, so a pair) and moves `champion`
   to the copies, in a process of its own as `cobranza promote` would; polls /v1/models on
   fresh connections until every worker reports the new versions (swap time);
2. after `--after` seconds, runs `cobranza features materialize` while the load goes on, polls
   /ready until every worker serves the generation it published (feature swap time), and
   counts the "swapped features" lines the workers log (one per worker is one reload per
   change).
The load runs until `--materialize-seconds` after the feature swap. Per one-second window of
send times: p50 and p99. Recovery: the first second after the swap from which every window's
p50 stays within 1.5x the baseline p50 (plus 1 ms); the p50 while the swap is
prepared (old copy serving) is reported apart, and so is the p50 while the materialization
itself runs on the same cores. The champion aliases are moved back at the end. Writes
benchmarks/results/swap.json.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import subprocess
import sys
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import load_average, machine
from benchmarks.serving import MAX_IN_FLIGHT, ROOT, LeanClient, Service, latest_account_ids

RESULTS = Path(__file__).parent / "results"
SEED = 0


async def _timed_load(
    port: int, headers: dict[str, str], bodies: list[dict], rate: float, stop: asyncio.Event
) -> list[tuple[float, float, int]]:
    """(send offset s, latency s, status) of each request sent at `rate` until `stop`; at
    most MAX_IN_FLIGHT outstanding (a send beyond that is dropped: status -1, latency nan)."""
    results: list[tuple[float, float, int]] = []
    began = time.perf_counter()
    in_flight = 0

    async def one(client: LeanClient, body: dict, scheduled: float) -> None:
        nonlocal in_flight
        try:
            answer = await client.post("/v1/scores", json=body)
            status = answer.status_code
        except Exception:
            status = 0
        finally:
            in_flight -= 1
        results.append((scheduled - began, time.perf_counter() - scheduled, status))

    async with LeanClient(port, headers) as client:
        tasks = []
        i = 0
        while not stop.is_set():
            scheduled = began + i / rate
            delay = scheduled - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if in_flight >= MAX_IN_FLIGHT:
                results.append((scheduled - began, float("nan"), -1))
            else:
                in_flight += 1
                tasks.append(asyncio.create_task(one(client, bodies[i % len(bodies)], scheduled)))
            i += 1
        await asyncio.gather(*tasks)
    return results


def _windows(results: list[tuple[float, float, int]]) -> list[dict[str, float]]:
    """p50 and p99 (ms) of the requests sent in each one-second window, and failures."""
    by_second: dict[int, list[float]] = {}
    failed: dict[int, int] = {}
    for sent, latency, status in results:
        second = int(sent)
        if status == 200:
            by_second.setdefault(second, []).append(latency * 1e3)
        else:
            failed[second] = failed.get(second, 0) + 1
    return [
        {
            "second": second,
            "requests": len(by_second.get(second, [])),
            "failed": failed.get(second, 0),
            "p50_ms": round(float(np.percentile(by_second[second], 50)), 2)
            if by_second.get(second)
            else float("nan"),
            "p99_ms": round(float(np.percentile(by_second[second], 99)), 2)
            if by_second.get(second)
            else float("nan"),
        }
        for second in sorted(set(by_second) | set(failed))
    ]


def _recovery(
    windows: list[dict[str, float]],
    moved: float,
    swapped: float,
    until: float,
    baseline_seconds: tuple[float, float],
) -> dict:
    """Baseline p50 (median of the windows from `baseline_seconds[0]` until before
    `baseline_seconds[1]`); the worst p50 while the swap was prepared (alias moved, old copy
    serving) and after it; when the p50 came back for good (before `until`)."""
    start, end = baseline_seconds
    baseline = float(np.median([w["p50_ms"] for w in windows if start <= w["second"] < end]))
    limit = 1.5 * baseline + 1.0
    preparing = [w for w in windows if int(moved) <= w["second"] < int(swapped)]
    after = [w for w in windows if int(swapped) <= w["second"] < int(until)]
    recovered = None
    for index, window in enumerate(after):
        if all(w["p50_ms"] <= limit for w in after[index:]):
            recovered = window["second"]
            break
    return {
        "baseline_p50_ms": round(baseline, 2),
        "limit_p50_ms": round(limit, 2),
        "worst_p50_ms_while_preparing": max((w["p50_ms"] for w in preparing), default=None),
        "median_p50_ms_while_preparing": float(np.median([w["p50_ms"] for w in preparing]))
        if preparing
        else None,
        "worst_p50_ms_after_swap": max((w["p50_ms"] for w in after), default=None),
        "recovered_second": recovered,
        "seconds_to_recover_after_swap": None
        if recovered is None
        else round(max(0.0, recovered - swapped), 1),
    }


def _copy_champions() -> dict[str, tuple[str, str]]:
    """Register a copy of each champion (same source, same run) and move `champion` to it;
    (old version, new version) by model name."""
    from mlflow.tracking import MlflowClient

    from pipelines.registry import CHAMPION, MODEL_NAMES, alias_version, open_registry, set_alias

    store = open_registry(create=False)
    client = MlflowClient()
    moved = {}
    for name in MODEL_NAMES.values():
        current = alias_version(name, CHAMPION)
        copy = client.create_model_version(name, current.source, run_id=current.run_id)
        moved[name] = (str(current.version), str(copy.version))
    for name, (_, new) in moved.items():
        set_alias(store, name, CHAMPION, new, "benchmark: hot swap under load")
    return moved


def _copy_champions_elsewhere() -> dict[str, tuple[str, str]]:
    """`_copy_champions` in a process of its own, as an operator's `cobranza promote` runs:
    importing MLflow takes seconds of CPU, which in this process would hold up the load
    generator and be counted as the service's latency."""
    code = (
        "import json; from benchmarks.swap import _copy_champions; "
        "print(json.dumps(_copy_champions()))"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    moved = json.loads(done.stdout.strip().splitlines()[-1])
    return {name: (old, new) for name, (old, new) in moved.items()}


def _restore(moved: dict[str, tuple[str, str]]) -> None:
    from pipelines.registry import CHAMPION, open_registry, set_alias

    store = open_registry(create=False)
    for name, (old, _) in moved.items():
        set_alias(store, name, CHAMPION, old, "benchmark: hot swap finished, champion restored")


def _wait_in_a_row(
    service: Service, path: str, serving: Callable[[Any], bool], what: str, timeout: float
) -> float:
    """Seconds until 12 answers in a row to GET `path` (fresh connections: any worker) say
    `serving(body)`."""
    import httpx

    started, streak = time.monotonic(), 0
    while streak < 12:
        if time.monotonic() - started > timeout:
            raise SystemExit(f"the service did not swap {what} within {timeout:.0f} s")
        try:
            answer = httpx.get(f"{service.url}{path}", headers=service.headers, timeout=30)
            done = serving(answer.json())
        except (httpx.HTTPError, ValueError, KeyError):  # busy or swapping: ask again
            done = False
        streak = streak + 1 if done else 0
        if not streak:
            time.sleep(0.2)
    return time.monotonic() - started


def _wait_versions(service: Service, expected: dict[str, str], timeout: float = 120.0) -> float:
    """Seconds until every worker serves the `expected` model versions."""

    def serving(body: Any) -> bool:
        versions = {m["name"]: m["version"] for m in body["models"]}
        return all(versions.get(n) == v for n, v in expected.items())

    return _wait_in_a_row(service, "/v1/models", serving, "models", timeout)


def _wait_features(service: Service, portfolio: Path, timeout: float = 300.0) -> float:
    """Seconds until every worker serves the online store generation published now."""
    from pipelines.feature_store import published_generation

    generation = published_generation(portfolio if portfolio.is_absolute() else ROOT / portfolio)
    assert generation is not None
    return _wait_in_a_row(
        service,
        "/ready",
        lambda body: body["detail"]["features"] == generation.name,
        "features",
        timeout,
    )


def measure(args: argparse.Namespace, ids: list[int]) -> dict[str, Any]:
    rng = np.random.default_rng(SEED)
    bodies = [{"account_ids": [str(a)], "reasons": True} for a in rng.choice(ids, 5000)]
    service = Service(args.portfolio, args.workers, watch_seconds=1.0)
    record: dict[str, Any] = {}
    moved: dict[str, tuple[str, str]] = {}
    try:
        record["ready_seconds"] = round(service.wait_ready(), 1)
        record["reasons_precomputed_after_seconds"] = round(service.wait_precomputed(), 1)

        async def run() -> tuple[list[tuple[float, float, int]], dict[str, Any]]:
            events: dict[str, Any] = {}
            stop = asyncio.Event()
            load = asyncio.create_task(
                _timed_load(service.port, service.headers, bodies, args.rate, stop)
            )
            began = time.perf_counter()
            events["load_began_utc"] = datetime.now(UTC).isoformat(timespec="milliseconds")
            await asyncio.sleep(args.warmup + args.before)
            events["promote_started_at"] = round(time.perf_counter() - began, 2)
            moved.update(await asyncio.to_thread(_copy_champions_elsewhere))
            events["alias_moved_at"] = round(time.perf_counter() - began, 2)
            expected = {name: new for name, (_, new) in moved.items()}
            waited = await asyncio.to_thread(_wait_versions, service, expected, 300.0)
            events["swapped_at"] = round(events["alias_moved_at"] + waited, 2)
            await asyncio.sleep(args.after)
            events["materialize_started_at"] = round(time.perf_counter() - began, 2)
            done = await asyncio.to_thread(
                subprocess.run,
                [
                    str(Path(sys.executable).with_name("cobranza")),
                    "features",
                    "materialize",
                    str(args.portfolio),
                ],
                cwd=ROOT,
                capture_output=True,
                text=True,
            )
            events["materialize_exit"] = done.returncode
            events["materialize_finished_at"] = round(time.perf_counter() - began, 2)
            waited = await asyncio.to_thread(_wait_features, service, args.portfolio, 300.0)
            events["features_swapped_at"] = round(events["materialize_finished_at"] + waited, 2)
            await asyncio.sleep(args.materialize_seconds)
            stop.set()
            return await load, events

        results, events = asyncio.run(run())
        record["events"] = events
        windows = _windows(results)
        record["windows"] = windows
        record["requests"] = len(results)
        record["failed_requests"] = sum(1 for _, _, status in results if status != 200)
        statuses: dict[str, int] = {}
        for _, _, status in results:
            label = {0: "connection error", -1: "dropped over in-flight cap"}.get(status, status)
            statuses[str(label)] = statuses.get(str(label), 0) + 1
        record["statuses"] = statuses
        record["model_swap"] = _recovery(
            windows,
            events["alias_moved_at"],
            events["swapped_at"],
            events["materialize_started_at"],
            (args.warmup, args.warmup + args.before),
        )
        record["feature_swap"] = _recovery(
            windows,
            events["materialize_finished_at"],
            events["features_swapped_at"],
            10**9,
            (args.warmup, args.warmup + args.before),
        )
        materializing = [
            w["p50_ms"]
            for w in windows
            if events["materialize_started_at"] <= w["second"] < events["materialize_finished_at"]
        ]
        record["while_materializing"] = {
            "median_p50_ms": float(np.median(materializing)) if materializing else None,
            "worst_p50_ms": max(materializing, default=None),
        }
        record["feature_swap"]["seconds_from_publication_to_swap"] = round(
            events["features_swapped_at"] - events["materialize_finished_at"], 2
        )
        record["model_swap"]["seconds_from_alias_move_to_swap"] = round(
            events["swapped_at"] - events["alias_moved_at"], 2
        )
        time.sleep(3)  # let the workers log the feature swap
    finally:
        record["stopped"] = service.stop()
        log = service.tail(lines=10_000)
        if args.service_log is not None:  # to line the windows up with what the workers did
            args.service_log.write_text(log.replace(" | ", "\n") + "\n")
        record["feature_reloads_logged"] = log.count("swapped features")
        record["model_reloads_logged"] = log.count("swapped cobranza-propensity")
        record["workers"] = args.workers
        if moved:
            _restore(moved)
    return record


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--portfolio", type=Path, default=Path("data/demo"))
    parser.add_argument(
        "--service-log", type=Path, default=None, help="write the service's log (UTC times) here"
    )
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--rate", type=float, default=200.0, help="requests per second")
    parser.add_argument(
        "--warmup", type=float, default=10.0, help="seconds of load before the baseline"
    )
    parser.add_argument("--before", type=float, default=10.0, help="seconds of baseline")
    parser.add_argument("--after", type=float, default=30.0, help="seconds after the swap")
    parser.add_argument("--materialize-seconds", type=float, default=30.0)
    parser.add_argument("--out", default="swap.json", help="file name under results/")
    args = parser.parse_args()
    folder = args.portfolio if args.portfolio.is_absolute() else ROOT / args.portfolio

    ids = latest_account_ids(folder)
    record: dict[str, Any] = {
        "benchmark": "swap",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.swap", *sys.argv[1:]]),
        "portfolio": str(args.portfolio),
        "accounts": len(ids),
        "rate_per_second": args.rate,
        "machine": machine(("fastapi", "uvicorn", "lightgbm", "mlflow", "feast")),
        "load_start": load_average(),
    }
    record.update(measure(args, ids))
    record["load_end"] = load_average()
    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(record, indent=2) + "\n")
    print(f"\nswap benchmark ({record['when']}) -> {out}")
    print(f"  requests {record['requests']:,}, statuses {record['statuses']}")
    for name in ("model_swap", "feature_swap"):
        swap = record[name]
        print(
            f"  {name}: p50 before {swap['baseline_p50_ms']} ms; while preparing median "
            f"{swap['median_p50_ms_while_preparing']} worst {swap['worst_p50_ms_while_preparing']}"
            f" ms; after the swap worst {swap['worst_p50_ms_after_swap']} ms, back within "
            f"{swap['limit_p50_ms']} ms {swap['seconds_to_recover_after_swap']} s after it"
        )
    print(
        "  model swapped in",
        record["model_swap"]["seconds_from_alias_move_to_swap"],
        "s after the alias moved; features swapped in",
        record["feature_swap"]["seconds_from_publication_to_swap"],
        "s after the generation was published",
    )
    print(f"  while the materialization ran: p50 {record['while_materializing']}")
    print(
        f"  reloads logged: models {record['model_reloads_logged']}, features "
        f"{record['feature_reloads_logged']} ({record['workers']} workers)"
    )


if __name__ == "__main__":
    main()
