"""Write a simulated portfolio to a folder: contract tables, `manifest.json` and `truth/`."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from pipelines.portfolio import MANIFEST, staged_output, write_json, write_tables
from simulator.engine import SimulationConfig, run_simulation
from simulator.tables import iter_tables, portfolio_manifest, truth_parameters

TRUTH_FOLDER = "truth"


def simulate_to_folder(
    config: SimulationConfig,
    folder: Path,
    overwrite: bool = False,
    progress: Callable[[int], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> dict[str, object]:
    """Simulate a portfolio and write it table by table; returns the manifest.

    The hidden truth goes to `<folder>/truth/` (debtor traits, per-contact true probabilities,
    `params.json`); only benchmarks may read it. `notify` hears what an interrupted earlier run
    left and was cleaned up.
    """
    with staged_output(Path(folder), overwrite, notify=notify) as staging:
        output = run_simulation(config, progress)
        rows: dict[str, int] = {}
        for kind, name, frame in iter_tables(output):
            if kind == "tables":
                write_tables(staging, {name: frame})
                rows[name] = len(frame)
            else:
                write_tables(staging / TRUTH_FOLDER, {name: frame})
            del frame
        write_json(staging / TRUTH_FOLDER / "params.json", truth_parameters(config))
        manifest = portfolio_manifest(config, rows)
        write_json(staging / MANIFEST, manifest)
    return manifest
