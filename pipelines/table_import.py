"""`cobranza import tables`: an agency's own tables into a portfolio folder, through a mapping.

The mapping file (`data_contracts.mapping`) says where each contract table comes from and how
its columns are obtained; the sources (`pipelines.sources`) are read in chunks and mapped, then
either validated in memory and reported (`--dry-run`, nothing written) or written as an
ordinary portfolio folder (tables, `manifest.json`), atomically. Rerunning on the same inputs
writes the same tables and manifest.

The manifest records how `action_probability` was obtained (`column` or `unknown`): with
`unknown`, off-policy estimates of a new policy are refused (`require_action_probability`).
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from pydantic import ValidationError

from data_contracts.mapping import (
    UNKNOWN,
    Mapping,
    MappingError,
    TableMapping,
    Unmapped,
    map_table,
    missing_source_columns,
    parse_mapping,
)
from data_contracts.schemas import CONTRACTS, empty_table
from data_contracts.validation import ValidationResult, validate_tables
from pipelines.portfolio import MANIFEST, check_output, staged_output, write_json, write_tables
from pipelines.sources import Source, SourceError, source_from


@dataclass(frozen=True)
class ImportReport:
    """What an import read, mapped and (unless a dry run) wrote."""

    manifest: dict[str, object]
    unmapped: list[Unmapped]
    not_mapped: list[str]
    validation: ValidationResult | None = None
    written: Path | None = None


def read_mapping(path: Path) -> tuple[Mapping, dict[str, Source]]:
    """The mapping file validated, with its sources; a `MappingError` names file, line, key."""
    path = Path(path)
    if not path.is_file():
        raise MappingError(f"{path}: mapping file not found")
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise MappingError(f"{path}: cannot be read ({type(error).__name__})") from None
    sources: dict[str, Source] = {}
    mapping, _ = parse_mapping(text, str(path), lambda m: _source_problems(m, sources))
    return mapping, sources


def _source_problems(
    mapping: Mapping, sources: dict[str, Source]
) -> list[tuple[tuple[str | int, ...], str]]:
    """Build each declared source into `sources`; what is wrong with them, and with what the
    tables ask of them."""
    problems: list[tuple[tuple[str | int, ...], str]] = []
    for name, settings in mapping.sources.items():
        try:
            sources[name] = source_from(settings)
        except ValidationError as error:
            for e in error.errors():
                message = str(e["msg"]).removeprefix("Value error, ")
                if e["type"] == "extra_forbidden":
                    message = f"unknown key {e['loc'][-1]!r} for a {settings.get('kind')} source"
                problems.append((("sources", name, *e["loc"]), message))
        except ValueError as error:
            problems.append((("sources", name, "kind"), str(error)))
    for table, rules in mapping.tables.items():
        source = sources.get(mapping.source_of(table))
        if source is not None:
            problems += [(("tables", table), text) for text in source.problems(rules)]
    return problems


def map_sources(
    mapping: Mapping, sources: dict[str, Source], base: Path, progress: Callable[[str], None]
) -> tuple[dict[str, pd.DataFrame], list[Unmapped]]:
    """Every contract table read from its source and mapped; tables the mapping leaves out
    are empty."""
    tables: dict[str, pd.DataFrame] = {}
    unmapped: list[Unmapped] = []
    for table in CONTRACTS:
        rules = mapping.tables.get(table)
        if rules is None:
            tables[table] = empty_table(table)
            continue
        progress(table)
        source = sources[mapping.source_of(table)]
        chunks = _checked(source.read(rules, base), table, rules, source.describe(rules, base))
        zone = mapping.timezone
        tables[table], found = map_table(table, rules, zone, chunks)
        unmapped += found
    return tables, unmapped


def _checked(
    chunks: Iterator[pd.DataFrame], table: str, rules: TableMapping, where: str
) -> Iterator[pd.DataFrame]:
    """The chunks, after checking the first holds every source column the mapping names."""
    for chunk in chunks:
        missing = missing_source_columns(rules, chunk.columns)
        if missing:
            raise SourceError(
                f"{where}: no column(s) {', '.join(missing)} for {table} "
                f"(it has {', '.join(map(str, chunk.columns))})"
            )
        yield chunk


def manifest_of(
    mapping: Mapping, mapping_text: bytes, tables: dict[str, pd.DataFrame], unmapped: list[Unmapped]
) -> dict[str, object]:
    """The portfolio's manifest: source, data end, how action_probability was obtained,
    the mapping's hash, tables not mapped, unmapped values and row counts."""
    end = pd.Timestamp(mapping.data_end)
    end = end.tz_localize(mapping.timezone) if end.tzinfo is None else end
    return {
        "source": mapping.name,
        "data_end": end.tz_convert("UTC").isoformat(),
        "action_probability": "column" if mapping.action_probability_known() else UNKNOWN,
        "mapping_sha256": hashlib.sha256(mapping_text).hexdigest(),
        "tables_not_mapped": [t for t in CONTRACTS if t not in mapping.tables],
        "unmapped_values": [vars(u) for u in unmapped],
        "rows": {name: len(frame) for name, frame in tables.items()},
    }


def import_tables(
    mapping_path: Path,
    out: Path | None,
    dry_run: bool = False,
    overwrite: bool = False,
    progress: Callable[[str], None] | None = None,
    notify: Callable[[str], None] | None = None,
) -> ImportReport:
    """Read, map, then validate in memory (`dry_run`, nothing written) or write the folder.

    Raises:
        MappingError: the mapping file is invalid (names the line and key).
        SourceError: a source cannot be read, or lacks a column the mapping names.
        OutputFolderError: `out` cannot be used.
    """
    mapping_path = Path(mapping_path)
    say = progress or (lambda _: None)
    mapping, sources = read_mapping(mapping_path)
    if not dry_run:
        if out is None:
            raise ValueError("an output folder is needed unless it is a dry run")
        check_output(Path(out), overwrite, keep=[mapping_path])
    base = mapping_path.resolve().parent
    tables, unmapped = map_sources(mapping, sources, base, say)
    manifest = manifest_of(mapping, mapping_path.read_bytes(), tables, unmapped)
    not_mapped = [t for t in CONTRACTS if t not in mapping.tables]
    if dry_run:
        end = pd.Timestamp(str(manifest["data_end"]))
        result = validate_tables(tables, data_end=end, progress=say)
        return ImportReport(manifest, unmapped, not_mapped, validation=result)
    assert out is not None
    with staged_output(Path(out), overwrite, keep=[mapping_path], notify=notify) as folder:
        write_tables(folder, tables)
        write_json(folder / MANIFEST, manifest)
    return ImportReport(manifest, unmapped, not_mapped, written=Path(out))
