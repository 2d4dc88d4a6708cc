"""Benchmark the scoring service over loopback: the real `cobranza serve`, real models from the
MLflow registry, real Feast online store.

    .venv/bin/python -m benchmarks.serving [--portfolio data/demo] [--workers 2] [--duration 20]

Starts `cobranza serve` as a subprocess on a free 127.0.0.1 port (a one-time API key,
registry watching off), waits for /ready, then drives it with a bounded asyncio load generator
in this process, so it shares the machine's cores with the service (the one-account phases use
`LeanClient`, plain HTTP/1.1 keep-alive on asyncio streams: httpx spends about 2 ms of CPU per
request, which made the load generator, not the service, the bottleneck at 500 requests/s):
1. one account per request with reasons: closed loop with `--connections` connections for
   `--duration` seconds (p50, p99, requests/s), then open loop at fixed offered rates (500/s and
   half the closed-loop maximum) for `--open-seconds` each; latency of an open-loop request is
   counted from its scheduled send time, so queueing is included;
2. 1,000 accounts per request (with reasons), `--batches` requests one after another;
3. the worklist over every account of the portfolio, `--worklists` requests one after another;
4. the floor, after the service is stopped: LightGBM's own predict (and pred_contrib, which the
   reasons need) for the same accounts' features from the latest snapshot, in this process, plus
   an in-process breakdown of `ScoringService.score_ids` for one account.
Load averages are recorded at the start and end of every phase. Writes
benchmarks/results/serving.json and prints a table.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import resource
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.measure import load_average, machine, percentiles_ms

RESULTS = Path(__file__).parent / "results"
ROOT = Path(__file__).resolve().parents[1]
SEED = 0
READY_TIMEOUT = 240.0
REQUEST_TIMEOUT = 30.0
KEEPALIVE_EXPIRY = 4.0
MAX_IN_FLIGHT = 256  # open loop: sends beyond this many outstanding requests are dropped
WORKLIST_CAPACITY = {"call": 200, "sms": 300, "email": 500, "letter": 50}


# ----- measuring ------------------------------------------------------------------------------
class _Answer:
    def __init__(self, status_code: int, content: bytes) -> None:
        self.status_code = status_code
        self.content = content

    def json(self) -> Any:
        return json.loads(self.content)


class LeanClient:
    """A minimal HTTP/1.1 client with keep-alive connections (one request per connection at
    a time, a new connection when none is idle), for JSON POSTs to the service on loopback.
    About 0.1 ms of CPU per request, so the generator leaves the cores to the service.

    Like httpx (`keepalive_expiry`, 5 s), it does not reuse a connection idle for longer than
    KEEPALIVE_EXPIRY, nor one the server has closed: the service closes connections idle for
    its `idle_timeout` (5 s), and a request sent on one it is closing would fail."""

    def __init__(self, port: int, headers: dict[str, str]) -> None:
        self.port = port
        self.extra = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        self.idle: list[tuple[asyncio.StreamReader, asyncio.StreamWriter, float]] = []
        self.opened: list[asyncio.StreamWriter] = []

    def _reusable(self) -> tuple[asyncio.StreamReader, asyncio.StreamWriter] | None:
        now = time.monotonic()
        while self.idle:
            reader, writer, since = self.idle.pop()
            if now - since < KEEPALIVE_EXPIRY and not reader.at_eof() and not writer.is_closing():
                return reader, writer
            writer.close()
        return None

    async def __aenter__(self) -> LeanClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        for writer in self.opened:
            writer.close()

    async def post(self, path: str, json: Any) -> _Answer:
        body = _dumps(json).encode()
        reused = self._reusable()
        if reused is not None:
            reader, writer = reused
        else:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            self.opened.append(writer)
        head = (
            f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\n{self.extra}"
            f"Content-Type: application/json\r\nContent-Length: {len(body)}\r\n\r\n"
        )
        writer.write(head.encode() + body)
        try:
            async with asyncio.timeout(REQUEST_TIMEOUT):
                answer = await reader.readuntil(b"\r\n\r\n")
                start = answer.lower().find(b"content-length:")
                if start < 0:
                    raise ConnectionError("answer without Content-Length")
                length = int(answer[start + 15 : answer.index(b"\r\n", start)])
                content = await reader.readexactly(length)
        except BaseException:
            writer.close()
            raise
        self.idle.append((reader, writer, time.monotonic()))
        return _Answer(int(answer[9:12]), content)


def _dumps(value: Any) -> str:
    return json.dumps(value)


def _cpu_seconds() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _time_calls(function: Callable[[], Any], calls: int, warmup: int = 5) -> dict[str, float]:
    for _ in range(warmup):
        function()
    seconds = []
    for _ in range(calls):
        started = time.perf_counter()
        function()
        seconds.append(time.perf_counter() - started)
    return {"calls": calls, **percentiles_ms(seconds)}


# ----- the service ----------------------------------------------------------------------------
def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class Service:
    """`cobranza serve` in a subprocess (its own process group), stopped on exit."""

    def __init__(
        self,
        portfolio: Path,
        workers: int,
        reason_cache: int | None = None,
        precompute_reasons: bool = True,
        watch_seconds: float = 0.0,
    ) -> None:
        self.workers = workers
        self.key = secrets.token_urlsafe(24)
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = tempfile.TemporaryFile()  # noqa: SIM115 (lives as long as the service)
        env = {
            **os.environ,
            "COBRANZA_SERVING__API_KEYS": json.dumps([self.key]),
            "COBRANZA_SERVING__WATCH_SECONDS": str(watch_seconds),
        }
        if reason_cache is not None:
            env["COBRANZA_SERVING__REASON_CACHE"] = str(reason_cache)
        env["COBRANZA_SERVING__PRECOMPUTE_REASONS"] = str(precompute_reasons).lower()
        command = [
            str(Path(sys.executable).with_name("cobranza")),
            "serve",
            "--portfolio",
            str(portfolio),
            "--port",
            str(self.port),
            "--workers",
            str(workers),
        ]
        self.process = subprocess.Popen(
            command,
            env=env,
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self.log,
            start_new_session=True,
        )

    @property
    def headers(self) -> dict[str, str]:
        return {"X-API-Key": self.key}

    def wait_ready(self) -> float:
        import httpx

        started = time.monotonic()
        while time.monotonic() - started < READY_TIMEOUT:
            if self.process.poll() is not None:
                raise SystemExit(f"the service exited while starting: {self.tail()}")
            try:
                answer = httpx.get(f"{self.url}/ready", headers=self.headers, timeout=5)
                if answer.status_code == 200 and self.listening() >= self.workers:
                    return time.monotonic() - started
                if answer.status_code == 503:
                    raise SystemExit(f"service not ready: {answer.text[:300]}")
            except httpx.TransportError:
                pass
            time.sleep(0.25)
        raise SystemExit(f"service not ready within {READY_TIMEOUT:.0f} s: {self.tail()}")

    def wait_precomputed(self, in_a_row: int = 12) -> float:
        """Wait until /ready reports every account's reason codes precomputed `in_a_row`
        times running, each on a new connection (so every worker has been asked, with
        probability 1 - 2**-11 for two workers)."""
        import httpx

        started, streak = time.monotonic(), 0
        while streak < in_a_row:
            if time.monotonic() - started > READY_TIMEOUT * 4:
                raise SystemExit("reason codes not precomputed in time")
            detail = httpx.get(f"{self.url}/ready", headers=self.headers, timeout=5).json()
            done, total = detail["detail"]["reasons_precomputed"].split("/")
            streak = streak + 1 if total != "0" and done == total else 0
            if not streak:
                time.sleep(0.5)
        return time.monotonic() - started

    def listening(self) -> int:
        """Listening sockets on the service's port: one per worker that finished loading
        (each worker binds its own with SO_REUSEPORT), so load starts only when every worker
        can take connections."""
        port = f":{self.port:04X}"
        count = 0
        for table in ("/proc/net/tcp", "/proc/net/tcp6"):
            with contextlib.suppress(OSError):
                for line in Path(table).read_text().splitlines()[1:]:
                    fields = line.split()
                    count += fields[1].endswith(port) and fields[3] == "0A"
        return count

    def tail(self, lines: int = 5) -> str:
        self.log.seek(0)
        return " | ".join(self.log.read().decode(errors="replace").strip().splitlines()[-lines:])

    def pids(self) -> list[int]:
        """The uvicorn parent and its worker processes."""
        done = subprocess.run(
            ["ps", "-o", "pid=", "--ppid", str(self.process.pid)],
            capture_output=True,
            text=True,
        )
        return [self.process.pid, *(int(p) for p in done.stdout.split())]

    def cpu_by_pid(self) -> dict[int, float]:
        """User + system CPU seconds of the parent and each worker (from /proc)."""
        ticks = os.sysconf("SC_CLK_TCK")
        seconds = {}
        for pid in self.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
                seconds[pid] = (int(fields[11]) + int(fields[12])) / ticks
            except (OSError, IndexError, ValueError):
                pass
        return seconds

    def stop(self) -> str:
        if self.process.poll() is not None:
            return f"had exited ({self.process.returncode})"
        self.process.terminate()
        try:
            self.process.wait(timeout=20)
            return "terminated"
        except subprocess.TimeoutExpired:
            os.killpg(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=10)
            return "killed after 20 s"


# ----- load generation ------------------------------------------------------------------------
async def _closed_loop(
    client: Any, path: str, bodies: list[dict], connections: int, duration: float, cap: int
) -> dict:
    """`connections` workers each send back to back until `duration` s or `cap` requests."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    sent = 0
    deadline = time.perf_counter() + duration

    async def worker() -> None:
        nonlocal sent
        while time.perf_counter() < deadline and sent < cap:
            body = bodies[sent % len(bodies)]
            sent += 1
            started = time.perf_counter()
            try:
                answer = await client.post(path, json=body)
                if answer.status_code == 200:
                    latencies.append(time.perf_counter() - started)
                else:
                    errors[str(answer.status_code)] = errors.get(str(answer.status_code), 0) + 1
            except Exception as error:  # timeouts, resets: counted, not raised
                errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1

    began = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(connections)))
    elapsed = time.perf_counter() - began
    return {
        "mode": "closed loop",
        "connections": connections,
        "seconds": round(elapsed, 2),
        "requests_ok": len(latencies),
        "errors": errors,
        "requests_per_second": round(len(latencies) / elapsed, 1),
        **percentiles_ms(latencies),
    }


async def _open_loop(
    client: Any, path: str, bodies: list[dict], rate: float, duration: float
) -> dict:
    """Send at a fixed offered rate for `duration` s; latency counted from the scheduled send
    time. At most MAX_IN_FLIGHT outstanding; sends beyond that are dropped and counted."""
    latencies: list[float] = []
    errors: dict[str, int] = {}
    in_flight = 0
    dropped = 0
    total = int(rate * duration)

    async def one(body: dict, scheduled: float) -> None:
        nonlocal in_flight
        try:
            answer = await client.post(path, json=body)
            if answer.status_code == 200:
                latencies.append(time.perf_counter() - scheduled)
            else:
                errors[str(answer.status_code)] = errors.get(str(answer.status_code), 0) + 1
        except Exception as error:
            errors[type(error).__name__] = errors.get(type(error).__name__, 0) + 1
        finally:
            in_flight -= 1

    tasks = []
    began = time.perf_counter()
    for i in range(total):
        scheduled = began + i / rate
        delay = scheduled - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        if in_flight >= MAX_IN_FLIGHT:
            dropped += 1
            continue
        in_flight += 1
        tasks.append(asyncio.create_task(one(bodies[i % len(bodies)], scheduled)))
    send_seconds = time.perf_counter() - began
    await asyncio.gather(*tasks)
    elapsed = time.perf_counter() - began
    return {
        "mode": "open loop",
        "offered_per_second": rate,
        "offered_requests": total,
        "send_seconds": round(send_seconds, 2),
        "seconds": round(elapsed, 2),
        "requests_ok": len(latencies),
        "dropped_over_in_flight_cap": dropped,
        "errors": errors,
        "achieved_per_second": round(len(latencies) / elapsed, 1),
        **percentiles_ms(latencies),
    }


async def _sequential(client: Any, path: str, bodies: list[dict], count: int) -> dict:
    latencies: list[float] = []
    errors: dict[str, int] = {}
    last: Any = None
    for i in range(count):
        started = time.perf_counter()
        answer = await client.post(path, json=bodies[i % len(bodies)])
        if answer.status_code == 200:
            latencies.append(time.perf_counter() - started)
            last = answer.json()
        else:
            errors[str(answer.status_code)] = errors.get(str(answer.status_code), 0) + 1
    return {
        "requests_ok": len(latencies),
        "errors": errors,
        "runs_ms": [round(s * 1e3, 1) for s in latencies],
        **percentiles_ms(latencies),
        "_last": last,
    }


def _phase(service: Service, run: Callable[[], Any]) -> dict:
    load_start, cpu_service, cpu_client = load_average(), service.cpu_by_pid(), _cpu_seconds()
    result = asyncio.run(run())
    result.pop("_last", None)
    cpu_after = service.cpu_by_pid()
    used = [round(cpu_after[pid] - cpu_service.get(pid, 0.0), 1) for pid in cpu_after]
    result["service_cpu_seconds"] = round(sum(used), 1)
    result["service_cpu_seconds_parent_then_workers"] = used
    result["client_cpu_seconds"] = round(_cpu_seconds() - cpu_client, 1)
    result["load_start"], result["load_end"] = load_start, load_average()
    return result


def measure_service(args: argparse.Namespace, ids: list[int], day: str) -> dict:
    import httpx

    rng = np.random.default_rng(SEED)
    one = [{"account_ids": [str(a)], "reasons": True} for a in rng.choice(ids, 5000)]
    batches = [
        {"account_ids": [str(a) for a in rng.choice(ids, 1000, replace=False)], "reasons": True}
        for _ in range(4)
    ]
    plain = [{**batch, "reasons": False} for batch in batches]
    worklist = {"date": day, "capacity": WORKLIST_CAPACITY, "limit": 1000}

    service = Service(args.portfolio, args.workers, args.reason_cache, not args.cold_reasons)
    record: dict[str, Any] = {"load_before_start": load_average()}
    try:
        record["ready_seconds"] = round(service.wait_ready(), 1)
        if not args.cold_reasons:
            record["reasons_precomputed_after_seconds"] = round(service.wait_precomputed(), 1)
        record["worker_pids"] = len(service.pids()) - 1
        limits = httpx.Limits(max_connections=MAX_IN_FLIGHT, max_keepalive_connections=64)

        def client() -> httpx.AsyncClient:
            return httpx.AsyncClient(
                base_url=service.url,
                headers=service.headers,
                timeout=REQUEST_TIMEOUT,
                limits=limits,
            )

        def lean() -> LeanClient:
            return LeanClient(service.port, service.headers)

        async def warm() -> dict:
            async with lean() as c:
                return await _closed_loop(c, "/v1/scores", one, args.connections, 3.0, 2000)

        async def closed() -> dict:
            async with lean() as c:
                return await _closed_loop(
                    c, "/v1/scores", one, args.connections, args.duration, 200_000
                )

        def opened(rate: float) -> Callable[[], Any]:
            async def run() -> dict:
                async with lean() as c:
                    return await _open_loop(c, "/v1/scores", one, rate, args.open_seconds)

            return run

        def big(requests: list[dict]) -> Callable[[], Any]:
            async def run() -> dict:
                async with client() as c:
                    await c.post("/v1/scores", json=requests[0])  # warm up
                    return await _sequential(c, "/v1/scores", requests, args.batches)

            return run

        async def plan() -> dict:
            async with client() as c:
                await c.post("/v1/worklists", json=worklist)  # warm up
                result = await _sequential(c, "/v1/worklists", [worklist], args.worklists)
                counts = (result.get("_last") or {}).get("counts", {})
                result["counts"] = counts
                return result

        record["warmup"] = _phase(service, warm)
        record["one_account_closed"] = _phase(service, closed)
        maximum = record["one_account_closed"]["requests_per_second"]
        record["one_account_open"] = [
            _phase(service, opened(rate))
            for rate in sorted({500.0, round(max(maximum / 2, 1.0))}, reverse=True)
        ]
        record["batch_1000"] = _phase(service, big(batches))
        record["batch_1000_no_reasons"] = _phase(service, big(plain))
        record["worklist_all"] = _phase(service, plan)
    finally:
        record["stopped"] = service.stop()
        record["service_log_tail"] = service.tail()[-600:]
    return record


# ----- the floor ------------------------------------------------------------------------------
def _latest_features(folder: Path) -> Any:
    import pandas as pd

    from pipelines.feature_store import snapshot_times

    stamp = snapshot_times(folder)[-1].strftime("%Y-%m-%dT%H_%M_%S")
    accounts = pd.read_parquet(folder / "features" / "account" / f"as_of={stamp}.parquet")
    debtors = pd.read_parquet(folder / "features" / "debtor" / f"as_of={stamp}.parquet")
    owners = pd.read_parquet(folder / "accounts.parquet", columns=["account_id", "debtor_id"])
    frame = accounts.merge(owners, on="account_id", how="left").merge(
        debtors.drop(columns=["event_timestamp"]), on="debtor_id", how="left"
    )
    return frame, str(snapshot_times(folder)[-1])


def measure_floor(folder: Path, ids: list[int]) -> dict:
    import mlflow
    import mlflow.pyfunc

    frame, snapshot = _latest_features(folder)
    tracking = f"sqlite:///{ROOT / 'data' / 'mlflow' / 'mlflow.db'}"
    mlflow.set_tracking_uri(tracking)
    started = time.perf_counter()
    model = (
        mlflow.pyfunc.load_model("models:/cobranza-propensity@champion").unwrap_python_model().model
    )
    load_seconds = time.perf_counter() - started
    booster = model.classifier_.booster_
    rng = np.random.default_rng(SEED)
    chosen = frame.set_index("account_id").loc[rng.choice(ids, 1000, replace=False)]
    chosen = chosen.reset_index()
    one = chosen.iloc[[0]]
    encoded_all = model.encoder_.transform(chosen)
    encoded_one = encoded_all.iloc[[0]]
    matrix_all = np.ascontiguousarray(model.encoder_.to_array(chosen))
    matrix_one = matrix_all[:1]
    same = float(np.max(np.abs(booster.predict(matrix_all) - booster.predict(encoded_all))))
    result: dict[str, Any] = {
        "snapshot": snapshot,
        "model_load_seconds": round(load_seconds, 2),
        "features": len(model.feature_names_),
        "trees": int(booster.num_trees()),
        "booster_params_num_threads": booster.params.get("num_threads"),
        "numpy_vs_dataframe_max_abs_difference": same,
        "load_start": load_average(),
    }
    one_thread = {"num_threads": 1}
    result["one_row"] = {
        "booster_predict_numpy_1_thread": _time_calls(
            lambda: booster.predict(matrix_one, **one_thread), 2000
        ),
        "booster_predict_encoded_frame_1_thread": _time_calls(
            lambda: booster.predict(encoded_one, **one_thread), 1000
        ),
        "booster_pred_contrib_numpy_1_thread": _time_calls(
            lambda: booster.predict(matrix_one, pred_contrib=True, **one_thread), 1000
        ),
        "encoder_transform": _time_calls(lambda: model.encoder_.transform(one), 100),
        "model_predict_frame": _time_calls(lambda: model.predict_frame(one), 100),
        "model_reasons": _time_calls(lambda: model.reasons(one, 3), 100),
    }
    result["rows_1000"] = {
        "booster_predict_numpy_1_thread": _time_calls(
            lambda: booster.predict(matrix_all, **one_thread), 50, 2
        ),
        "booster_predict_numpy_default_threads": _time_calls(
            lambda: booster.predict(matrix_all), 50, 2
        ),
        "booster_pred_contrib_numpy_1_thread": _time_calls(
            lambda: booster.predict(matrix_all, pred_contrib=True, **one_thread), 10, 1
        ),
        "booster_pred_contrib_numpy_default_threads": _time_calls(
            lambda: booster.predict(matrix_all, pred_contrib=True), 10, 1
        ),
        "encoder_transform": _time_calls(lambda: model.encoder_.transform(chosen), 20, 2),
        "model_predict_frame": _time_calls(lambda: model.predict_frame(chosen), 20, 2),
        "model_reasons": _time_calls(lambda: model.reasons(chosen, 3), 5, 1),
    }
    result["load_end"] = load_average()
    return result


def measure_breakdown(folder: Path, ids: list[int]) -> dict:
    """`ScoringService.score_ids` in this process, and its parts, for one account and for
    1,000; reasons with the cache cold (every call computes TreeSHAP) and warm."""
    from data_contracts.settings import get_settings
    from serving.service import ScoringService

    settings = get_settings().serving.model_copy(update={"portfolio": str(folder)})
    started = time.perf_counter()
    service = ScoringService.load(settings)
    load_seconds = time.perf_counter() - started
    if not service.ready:
        return {"error": f"not ready: {service.errors}"}
    rng = np.random.default_rng(SEED + 1)
    account = [str(ids[0])]
    thousand = [str(a) for a in rng.choice(ids, 1000, replace=False)]
    propensity, actions, portfolio = service._ready_state()
    encoded = service._encoded_portfolio(portfolio, propensity, actions)
    rows = portfolio.positions(account)
    one = encoded.take(rows)
    assert one.contact is not None and one.value is not None

    def cold(accounts: list[int]) -> Callable[[], Any]:
        def run() -> Any:
            service.reason_cache.clear()
            return service.score_ids(accounts, True)

        return run

    return {
        "load_seconds": round(load_seconds, 1),
        "accounts_in_memory": len(portfolio.frame),
        "one_account": {
            "score_ids_no_reasons": _time_calls(lambda: service.score_ids(account, False), 200),
            "score_ids_reasons_cold": _time_calls(cold(account), 200),
            "score_ids_reasons_warm": _time_calls(lambda: service.score_ids(account, True), 200),
            "feature_row_lookup": _time_calls(lambda: portfolio.positions(account), 200),
            "propensity.predict_encoded": _time_calls(
                lambda: propensity.model.predict_encoded(one.propensity), 200
            ),
            "propensity.reasons_encoded": _time_calls(
                lambda: propensity.model.reasons_encoded(
                    one.propensity, portfolio.frame.iloc[rows], 3
                ),
                200,
            ),
            "actions.action_matrix": _time_calls(
                lambda: actions.model.action_matrix(one.contact, one.value, 0), 200
            ),
        },
        "thousand_accounts": {
            "score_ids_no_reasons": _time_calls(lambda: service.score_ids(thousand, False), 20),
            "score_ids_reasons_cold": _time_calls(cold(thousand), 5, 1),
            "score_ids_reasons_warm": _time_calls(lambda: service.score_ids(thousand, True), 20),
        },
    }


# ----- driver ---------------------------------------------------------------------------------
def _ms(entry: dict) -> str:
    return f"{entry['p50_ms']} / {entry['p99_ms']} ms"


def _table(record: dict) -> list[tuple[str, str]]:
    service, floor = record.get("service", {}), record.get("floor", {})
    lines: list[tuple[str, str]] = []
    if "one_account_closed" in service:
        c = service["one_account_closed"]
        lines += [
            ("service ready after", f"{service['ready_seconds']} s ({record['workers']} workers)"),
            (
                "reason codes precomputed after",
                f"{service.get('reasons_precomputed_after_seconds', 'off (on demand)')} s more",
            ),
            (
                f"1 account + reasons, {c['connections']} conn, p50 / p99",
                f"{_ms(c)} ({c['requests_per_second']} req/s max, {c['requests_ok']:,} ok, "
                f"errors {c['errors'] or 0})",
            ),
            (
                "  CPU s uvicorn parent, children / client",
                f"{c['service_cpu_seconds_parent_then_workers']} / {c['client_cpu_seconds']} "
                f"(wall {c['seconds']} s), load {c['load_start']} -> {c['load_end']}",
            ),
        ]
        for o in service.get("one_account_open", []):
            lines.append(
                (
                    f"1 account, offered {o['offered_per_second']:.0f}/s, p50 / p99",
                    f"{_ms(o)} (achieved {o['achieved_per_second']}/s, dropped "
                    f"{o['dropped_over_in_flight_cap']}, errors {o['errors'] or 0})",
                )
            )
    for phase, label in (("batch_1000", "+ reasons"), ("batch_1000_no_reasons", "no reasons")):
        if phase in service:
            b = service[phase]
            lines.append(
                (
                    f"1,000 accounts {label}, {b['requests_ok']} reqs, p50 / p99",
                    f"{_ms(b)} ({b['p50_ms'] / 1000:.3f} ms per account)",
                )
            )
    if "worklist_all" in service:
        w = service["worklist_all"]
        considered = w["counts"].get("considered") or 0
        per = w["p50_ms"] / considered if considered else float("nan")
        lines += [
            (
                f"worklist, all accounts, {w['requests_ok']} reqs, p50 / max",
                f"{w['p50_ms']} / {w['max_ms']} ms (counts {w['counts']})",
            ),
            (
                "  per considered account; 100k linear extrapolation",
                f"{per:.3f} ms; ~{per * 100_000 / 1000:.0f} s (extrapolated, not measured)",
            ),
        ]
    if "one_row" in floor:
        one, many = floor["one_row"], floor["rows_1000"]
        lines += [
            (
                "floor 1 row: predict numpy / frame / contrib",
                f"{one['booster_predict_numpy_1_thread']['p50_ms']} / "
                f"{one['booster_predict_encoded_frame_1_thread']['p50_ms']} / "
                f"{one['booster_pred_contrib_numpy_1_thread']['p50_ms']} ms (p50, 1 thread)",
            ),
            (
                "floor 1,000 rows: predict numpy / contrib",
                f"{many['booster_predict_numpy_1_thread']['p50_ms']} / "
                f"{many['booster_pred_contrib_numpy_1_thread']['p50_ms']} ms (1 thread); "
                f"{many['booster_predict_numpy_default_threads']['p50_ms']} / "
                f"{many['booster_pred_contrib_numpy_default_threads']['p50_ms']} ms (2 threads)",
            ),
            (
                "in-process 1 row: encode / predict_frame / reasons",
                f"{one['encoder_transform']['p50_ms']} / {one['model_predict_frame']['p50_ms']}"
                f" / {one['model_reasons']['p50_ms']} ms",
            ),
        ]
    for name, value in record.get("ratios", {}).items():
        lines.append((name, f"{value} x"))
    breakdown = record.get("breakdown", {})
    for group in ("one_account", "thousand_accounts"):
        for name, value in breakdown.get(group, {}).items():
            lines.append((f"  in-process, {group.replace('_', ' ')}: {name}", _ms(value)))
    for part in ("service", "floor", "breakdown"):
        if "error" in record.get(part, {}):
            lines.append((part, record[part]["error"]))
    return lines


def _ratios(record: dict) -> dict[str, float]:
    service, floor = record.get("service", {}), record.get("floor", {})
    if "one_row" not in floor or "one_account_closed" not in service:
        return {}
    one, many = floor["one_row"], floor["rows_1000"]
    predict_1 = one["booster_predict_numpy_1_thread"]["p50_ms"]
    with_contrib_1 = predict_1 + one["booster_pred_contrib_numpy_1_thread"]["p50_ms"]
    # the service's boosters keep their training threads (2), so the batch floor uses those
    predict_k = many["booster_predict_numpy_default_threads"]["p50_ms"]
    with_contrib_k = predict_k + many["booster_pred_contrib_numpy_default_threads"]["p50_ms"]
    ratios = {
        "service p50 / floor predict, 1 account": round(
            service["one_account_closed"]["p50_ms"] / predict_1
        ),
        "service p50 / floor predict+contrib, 1 account": round(
            service["one_account_closed"]["p50_ms"] / with_contrib_1, 1
        ),
    }
    if "batch_1000" in service:
        ratios["service p50 / floor predict, 1,000 accounts (2 thr)"] = round(
            service["batch_1000"]["p50_ms"] / predict_k, 1
        )
        ratios["service p50 / floor predict+contrib, 1,000 (2 thr)"] = round(
            service["batch_1000"]["p50_ms"] / with_contrib_k, 1
        )
    return ratios


def latest_account_ids(folder: Path) -> list[str]:
    """The accounts of the portfolio's latest feature snapshot."""
    import pandas as pd

    from pipelines.feature_store import snapshot_times

    stamp = snapshot_times(folder)[-1].strftime("%Y-%m-%dT%H_%M_%S")
    snapshot = folder / "features" / "account" / f"as_of={stamp}.parquet"
    return pd.read_parquet(snapshot, columns=["account_id"])["account_id"].astype(str).tolist()


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--portfolio", type=Path, default=Path("data/demo"))
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--duration", type=float, default=20.0, help="closed-loop seconds")
    parser.add_argument("--connections", type=int, default=8)
    parser.add_argument("--open-seconds", type=float, default=8.0, help="per offered rate")
    parser.add_argument("--batches", type=int, default=30, help="1,000-account requests")
    parser.add_argument("--worklists", type=int, default=5, help="worklist requests")
    parser.add_argument("--skip-floor", action="store_true")
    parser.add_argument(
        "--reason-cache",
        type=int,
        default=None,
        help="the service's reason cache size (0: every score computes its reasons)",
    )
    parser.add_argument(
        "--cold-reasons",
        action="store_true",
        help="turn off the service's reason precompute (requests compute reasons on demand)",
    )
    parser.add_argument("--out", default="serving.json", help="file name under results/")
    args = parser.parse_args()
    folder = args.portfolio if args.portfolio.is_absolute() else ROOT / args.portfolio

    ids = latest_account_ids(folder)
    manifest = json.loads((folder / "manifest.json").read_text())
    day = str(manifest["data_end"])[:10]

    record: dict[str, Any] = {
        "benchmark": "serving",
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join(["python -m benchmarks.serving", *sys.argv[1:]]),
        "portfolio": str(args.portfolio),
        "accounts_in_snapshot": len(ids),
        "worklist_date": day,
        "workers": args.workers,
        "machine": machine(("fastapi", "uvicorn", "httpx", "lightgbm", "pandas", "numpy", "feast")),
        "load_start": load_average(),
        "notes": [
            "load generator (httpx.AsyncClient) runs in the benchmark process on the same 2 "
            "cores as the service: its CPU time is recorded next to the service's",
            "open-loop latency counts from the scheduled send time (queueing included)",
            "floor and breakdown are measured in-process after the service has stopped",
            "service_cpu_seconds_parent_then_workers: CPU seconds of the uvicorn parent and each "
            "child process during a phase, which shows how requests spread over the workers",
        ],
    }
    record["service"] = measure_service(args, ids, day)
    if not args.skip_floor:
        try:
            record["floor"] = measure_floor(folder, ids)
        except Exception as error:
            record["floor"] = {"error": f"{type(error).__name__}: {error}"}
        try:
            record["breakdown"] = measure_breakdown(folder, ids)
        except Exception as error:
            record["breakdown"] = {"error": f"{type(error).__name__}: {error}"}
    record["ratios"] = _ratios(record)
    record["load_end"] = load_average()

    RESULTS.mkdir(exist_ok=True)
    out = RESULTS / args.out
    out.write_text(json.dumps(record, indent=2) + "\n")
    lines = _table(record)
    width = max((len(name) for name, _ in lines), default=0)
    print(f"\nserving benchmark ({record['when']}, {record['machine']['nproc']} cores) -> {out}")
    print(f"  load average {record['load_start']} -> {record['load_end']}")
    for name, value in lines:
        print(f"  {name:<{width}}  {value}")


if __name__ == "__main__":
    main()
