"""A private PostgreSQL server for the tests: its own cluster in a temporary folder, on a free
loopback port, as a separate process, stopped when the tests are done.

Uses Debian's `postgresql` package (`make postgres` installs it). initdb refuses to run as
root, so as root (CI) the cluster belongs to the `postgres` system user and every server
command runs as that user (setpriv, which execs the command itself: the process we start is
the server, and stopping it is a signal to it).
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

USER = "cobranza"
DATABASE = "agency"


def postgres_bin() -> Path | None:
    """The newest Debian PostgreSQL's bin folder, or None when it is not installed."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/initdb"), key=lambda p: int(p.parts[-3]))
    return found[-1].parent if found else None


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Server:
    port: int
    password: str

    @property
    def url(self) -> str:
        """SQLAlchemy URL with the password: give it to code through the environment only."""
        return f"postgresql+psycopg://{USER}:{self.password}@127.0.0.1:{self.port}/{DATABASE}"


def _as_owner(owner: pwd.struct_passwd | None) -> list[str]:
    if owner is None:
        return []
    return ["setpriv", f"--reuid={owner.pw_uid}", f"--regid={owner.pw_gid}", "--clear-groups"]


def _wait_ready(bin_dir: Path, port: int, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"PostgreSQL exited at start: {log.read_text()[-2000:]}")
        ready = subprocess.run(
            [str(bin_dir / "pg_isready"), "-h", "127.0.0.1", "-p", str(port), "-q"], check=False
        )
        if ready.returncode == 0:
            return
        time.sleep(0.2)
    raise RuntimeError(f"PostgreSQL not ready after 60 s: {log.read_text()[-2000:]}")


@contextmanager
def postgres_server() -> Iterator[Server]:
    """Start a private PostgreSQL cluster with one password-protected user and database."""
    bin_dir = postgres_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL is not installed: run `make postgres`")
    owner = pwd.getpwnam("postgres") if os.geteuid() == 0 else None
    home = Path(tempfile.mkdtemp(prefix="cobranza-pg-"))
    password = secrets.token_hex(12)
    (home / "password").write_text(password)
    if owner is not None:
        for path in (home, home / "password"):
            os.chown(path, owner.pw_uid, owner.pw_gid)
    run_as = _as_owner(owner)
    data, log = home / "data", home / "server.log"
    subprocess.run(
        [*run_as, str(bin_dir / "initdb"), "-D", str(data), "-U", USER, "-E", "UTF8",
         "--auth-host=scram-sha-256", "--auth-local=trust", f"--pwfile={home / 'password'}"],
        check=True, capture_output=True,
    )  # fmt: skip
    process = None
    try:
        for _ in range(3):  # another process may take the free port first
            port = free_port()
            with log.open("wb") as sink:
                process = subprocess.Popen(
                    [*run_as, str(bin_dir / "postgres"), "-D", str(data), "-p", str(port),
                     "-h", "127.0.0.1", "-k", str(home), "-c", "fsync=off"],
                    stdout=sink, stderr=subprocess.STDOUT,
                )  # fmt: skip
            try:
                _wait_ready(bin_dir, port, process, log)
                break
            except RuntimeError:
                if process.poll() is None:
                    raise
        else:
            raise RuntimeError(f"PostgreSQL did not start: {log.read_text()[-2000:]}")
        subprocess.run(
            [*run_as, str(bin_dir / "createdb"), "-h", str(home), "-p", str(port), "-U", USER,
             DATABASE],
            check=True, capture_output=True,
        )  # fmt: skip
        yield Server(port=port, password=password)
    finally:
        if process is not None and process.poll() is None:
            process.send_signal(signal.SIGINT)  # fast shutdown
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        shutil.rmtree(home, ignore_errors=True)
