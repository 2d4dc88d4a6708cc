"""Talk to the scoring service from the command line: start one for a portfolio if needed,
wait until it is ready, fetch a worklist, stop it."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

READY_TIMEOUT = 180.0


class ServiceError(RuntimeError):
    """The service could not be started or did not answer."""


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _wait_ready(url: str, key: str, process: subprocess.Popen[bytes] | None) -> None:
    import httpx

    deadline = time.monotonic() + READY_TIMEOUT
    while time.monotonic() < deadline:
        if process is not None and process.poll() is not None:
            raise ServiceError(f"the service stopped while starting (exit {process.returncode})")
        try:
            answer = httpx.get(f"{url}/ready", headers={"X-API-Key": key}, timeout=5)
            if answer.status_code == 200:
                return
            if answer.status_code == 503:  # loaded, but without what it needs: final
                missing = answer.json().get("detail", {}).get("missing", [])
                raise ServiceError(f"the service is not ready: {'; '.join(missing)}")
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    raise ServiceError(f"the service at {url} was not ready within {READY_TIMEOUT:.0f} s")


def fetch_worklist(
    portfolio: Path,
    url: str | None,
    day: str,
    capacity: dict[str, int],
    tracking_uri: str | None = None,
) -> dict[str, Any]:
    """The worklist for `day` from the service at `url`, or from one started here."""
    import httpx

    with contextlib.ExitStack() as stack:
        process = None
        if url is None:
            key = secrets.token_urlsafe(24)  # lives only in the child's environment
            port = _free_port()
            url = f"http://127.0.0.1:{port}"
            env = {**os.environ, "COBRANZA_SERVING__API_KEYS": f'["{key}"]'}
            if tracking_uri:
                env["COBRANZA_TRAINING__TRACKING_URI"] = tracking_uri
            cobranza = str(Path(sys.executable).with_name("cobranza"))
            command = [cobranza, "serve", "--portfolio", str(portfolio), "--port", str(port)]
            log = stack.enter_context(tempfile.TemporaryFile())  # shown only if it fails
            process = subprocess.Popen(command, env=env, stdout=subprocess.DEVNULL, stderr=log)
            stack.callback(_stop, process)
        else:
            key = os.environ.get("COBRANZA_API_KEY", "")
            if not key:
                raise ServiceError("set COBRANZA_API_KEY to call a running service")
        try:
            _wait_ready(url, key, process)
        except ServiceError:
            if process is None or process.poll() is None:  # it answered: its reason stands
                raise
            log.seek(0)
            tail = log.read().decode(errors="replace").strip().splitlines()[-3:]
            raise ServiceError(f"{url} not ready; its last words: {' | '.join(tail)}") from None
        answer = httpx.post(
            f"{url}/v1/worklists",
            json={"date": day, "capacity": capacity, "limit": 100_000},
            headers={"X-API-Key": key},
            timeout=300,
        )
        if answer.status_code != 200:
            raise ServiceError(f"the service answered {answer.status_code}: {answer.text[:300]}")
        return dict(answer.json())


def _stop(process: subprocess.Popen[bytes]) -> None:
    process.terminate()
    try:
        process.wait(timeout=20)
    except subprocess.TimeoutExpired:
        process.kill()
