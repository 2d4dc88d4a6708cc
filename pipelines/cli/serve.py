"""Commands on the scoring service: serve, and fetch a worklist from it."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated

import typer

from pipelines.cli.shell import (
    TrackingUri,
    console,
    fail,
    user_errors,
)


def serve(
    portfolio: Annotated[
        Path | None,
        typer.Option(help="Portfolio whose online store serves features [default: settings]."),
    ] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=1, max=65535, help="Port to listen on.")] = 8000,
    workers: Annotated[int, typer.Option(min=1, help="Worker processes.")] = 1,
    tracking_uri: TrackingUri = None,
) -> None:
    """Start the scoring service (FastAPI under uvicorn).

    API keys come from COBRANZA_SERVING__API_KEYS (a JSON list), never from the command line.
    """
    from pydantic import ValidationError

    from data_contracts.settings import get_settings

    try:
        settings = get_settings()
    except ValidationError as error:  # the messages name fields, never their values
        problems = "; ".join(
            f"{'.'.join(str(part) for part in e['loc'])}: {e['msg']}" for e in error.errors()
        )
        raise fail(f"invalid settings: {problems}") from None
    if portfolio is not None:
        os.environ["COBRANZA_SERVING__PORTFOLIO"] = str(portfolio)
    if tracking_uri is not None:
        os.environ["COBRANZA_TRAINING__TRACKING_URI"] = tracking_uri
    if not settings.serving.api_keys:
        raise fail("no API keys configured: set COBRANZA_SERVING__API_KEYS='[\"a-key\"]'")
    get_settings.cache_clear()
    from serving.runner import run

    status = run(host, port, workers)
    if status:
        raise typer.Exit(status)


def worklist(
    portfolio: Annotated[
        Path, typer.Option(help="Portfolio whose service plans the day (started if no --url).")
    ] = Path("data/demo"),
    url: Annotated[
        str | None, typer.Option(help="A running service [default: start one on loopback].")
    ] = None,
    day: Annotated[
        str | None, typer.Option("--date", help="Day to plan [default: the data's last day].")
    ] = None,
    call: Annotated[int, typer.Option(min=0, help="Call attempts available.")] = 200,
    sms: Annotated[int, typer.Option(min=0, help="SMS available.")] = 300,
    email: Annotated[int, typer.Option(min=0, help="E-mails available.")] = 500,
    letter: Annotated[int, typer.Option(min=0, help="Letters available.")] = 50,
    top: Annotated[int, typer.Option(min=1, help="Items to print.")] = 15,
    tracking_uri: TrackingUri = None,
) -> None:
    """Fetch a compliant worklist from the scoring service and print it.

    Without --url, starts `cobranza serve` on a free loopback port with a one-time API key,
    asks it for the worklist and stops it. With --url, the key comes from COBRANZA_API_KEY.
    """
    import json

    from pipelines.serve_client import ServiceError, fetch_worklist

    capacity = {"call": call, "sms": sms, "email": email, "letter": letter}
    with user_errors("fetching the worklist", ServiceError, FileNotFoundError):
        if day is None:
            manifest = json.loads((portfolio / "manifest.json").read_text())
            day = str(manifest["data_end"])[:10]
        body = fetch_worklist(portfolio, url, day, capacity, tracking_uri)
    _print_worklist(body, top)


def _print_worklist(body: dict, top: int) -> None:
    from rich.table import Table

    table = Table(title=f"Worklist for {body['date']} (top {top} of {len(body['items'])})")
    for column in ("rank", "account", "kind", "channel", "window (local)", "offer", "net"):
        table.add_column(column, justify="right" if column in ("rank", "net") else "left")
    follow_ups = [item for item in body["items"] if item["kind"] != "best_action"]
    shown = follow_ups[: top // 3] + [i for i in body["items"] if i["kind"] == "best_action"]
    for item in shown[:top]:
        offer = item.get("offer") or "-"
        if item.get("discount_pct"):
            offer = f"discount {item['discount_pct']:.0f}%"
        elif item.get("installments"):
            offer = f"plan x{item['installments']}"
        net = item.get("expected_net")
        table.add_row(
            str(item["rank"]),
            str(item["account_id"]),
            item["kind"],
            item["channel"],
            f"{item['local_window']} {item['timezone']}",
            offer if item["kind"] == "best_action" else (item.get("detail") or "-"),
            "-" if net is None else f"{net:,.2f}",
        )
    screen = console()
    screen.print(table)
    counts = ", ".join(f"{k} {v:,}" for k, v in body["counts"].items())
    screen.print(f"accounts: {counts}", soft_wrap=True)
    for excluded in body["excluded"][:3]:
        screen.print(f"  account {excluded['account_id']}: {excluded['reason']}", soft_wrap=True)
