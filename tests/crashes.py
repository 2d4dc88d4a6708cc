"""Killing cobranza's writers for real (SIGKILL) at a point the test chooses."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

COBRANZA = str(Path(sys.executable).with_name("cobranza"))
JOURNAL_MAGIC = bytes.fromhex("d9d505f920a163d7")
"""The first bytes of a SQLite rollback journal once synced: a hot journal if left behind."""


def materialize(folder: Path, **env: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [COBRANZA, "features", "materialize", str(folder)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **env},
    )


def kill_on_hot_journal(folder: Path, timeout: float = 240) -> None:
    """Run a materialization and SIGKILL it while a synced rollback journal is on disk."""
    process = materialize(folder)
    deadline = time.monotonic() + timeout
    try:
        while process.poll() is None and time.monotonic() < deadline:
            if any(_hot(journal) for journal in (folder / "feature_store").rglob("*-journal")):
                process.send_signal(signal.SIGKILL)
                break
            time.sleep(0.001)
    finally:
        if process.poll() is None and time.monotonic() >= deadline:
            process.kill()
        process.communicate()
    assert process.returncode == -signal.SIGKILL, "no hot journal seen before the run ended"


def _hot(journal: Path) -> bool:
    try:
        with journal.open("rb") as file:
            return file.read(8) == JOURNAL_MAGIC
    except FileNotFoundError:
        return False
