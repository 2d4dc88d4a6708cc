"""The `cobranza` command line: one command per stage, each a few lines calling library code.

One module per command group (`portfolio`, `features`, `models`, `serve`, `reports`); each
parses options and calls a workflow function of `pipelines` (or starts `serving`, the one
upward arrow). Workflow modules are imported inside the commands: they pull pandas, Feast and
MLflow (about 8 s), so `cobranza --help` answers at once.
"""

from __future__ import annotations

import typer

from pipelines.cli import features, models, portfolio, reports, serve

__all__ = ["app", "main"]

app = typer.Typer(
    name="cobranza",
    help="Propensity-to-pay scoring and compliant worklists for debt collection.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode=None,
)
app.command()(portfolio.simulate)
app.command()(portfolio.validate)
app.command()(portfolio.contracts)
app.add_typer(portfolio.import_app, name="import", no_args_is_help=True)
app.add_typer(features.features_app, name="features", no_args_is_help=True)
app.command()(models.train)
app.command()(models.evaluate)
app.command()(models.promote)
app.command()(serve.serve)
app.command()(serve.worklist)
app.command()(reports.audit)
app.command()(reports.kpis)


def main() -> None:
    app()
