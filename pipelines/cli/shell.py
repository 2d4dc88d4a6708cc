"""What every command shares: consoles, progress bars, one-line errors and common options.

Nothing heavy is imported here, so `cobranza --help` answers at once.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

if TYPE_CHECKING:
    from rich.console import Console
    from rich.progress import Progress

    from training.config import ExperimentConfig

EXIT_VALID, EXIT_QUARANTINED, EXIT_UNUSABLE = 0, 1, 2

TrackingUri = Annotated[
    str | None,
    typer.Option(
        help="MLflow tracking and registry URI [default: SQLite store in data/mlflow/].",
        envvar="COBRANZA_TRAINING__TRACKING_URI",
    ),
]


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


def progress_bar(*columns: Any) -> Progress:
    """A transient progress bar on stderr, silent when stderr is not a terminal (CI, logs)."""
    from rich.progress import Progress

    err = console(stderr=True)
    return Progress(*columns, console=err, transient=True, disable=not err.is_terminal)


def fail(message: str) -> typer.Exit:
    """Print `error: message` on stderr (one line per problem when the message holds several)
    and return the exit for bad input."""
    from rich.markup import escape

    err = console(stderr=True)
    for line in message.splitlines() or [message]:
        # soft_wrap: an error names a file; it must stay on one line to be copied or grepped
        err.print(f"[bold red]error:[/] {escape(line)}", soft_wrap=True)
    return typer.Exit(EXIT_UNUSABLE)


def note(message: str) -> None:
    """A remark on stderr, on one line: what an interrupted earlier run left and was cleaned
    up, for instance."""
    from rich.markup import escape

    console(stderr=True).print(f"note: {escape(message)}", soft_wrap=True)


@contextmanager
def user_errors(action: str, *expected: type[BaseException]) -> Iterator[None]:
    """Turn errors into one-line messages and exit status 2, never a traceback.

    Expected errors (bad input) print their message, which names the file, column or rule.
    Anything else prints only its type, since its text could quote data;
    COBRANZA_DEBUG=1 re-raises it with the traceback for developers.
    """
    try:
        yield
    except typer.Exit:
        raise
    except expected as error:
        raise fail(str(error)) from None
    except Exception as error:
        if os.environ.get("COBRANZA_DEBUG"):
            raise
        raise fail(
            f"unexpected {type(error).__name__} while {action}; "
            "set COBRANZA_DEBUG=1 to see the details"
        ) from None


def timestamp_option(value: str | None, option: str) -> Any:
    import pandas as pd

    if value is None:
        return None
    try:
        stamp = pd.Timestamp(value)
    except ValueError:
        raise fail(
            f"{option} {value!r} is not a date (use YYYY-MM-DD or an ISO timestamp)"
        ) from None
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp


def experiment_option(path: Path | None) -> tuple[ExperimentConfig, str]:
    """The experiment file an option names (built-in settings without one), or exit 2."""
    from training.config import ExperimentError, load_experiment

    try:
        return load_experiment(path)
    except ExperimentError as error:
        raise fail(str(error)) from None


def check_output_folder(out: Path | None) -> None:
    """Refuse an output option that names a file."""
    if out is not None and out.exists() and not out.is_dir():
        raise fail(f"--out {out} is a file, not a folder")
