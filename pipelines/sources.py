"""Where a mapping's tables are read from: CSV and parquet files, and SQL databases.

Each kind of source is a pydantic model that reads itself (`Source`), and `SOURCE_KINDS` maps
the `kind:` of a mapping file's source to its class, the way Feast maps `online_store.type`
to a store class. Sources read in chunks of `chunk_rows` rows.

A database URL may carry a password, so it is read from an environment variable named in the
mapping (`url_env:`); a URL written in the file itself is refused if it has one. Messages show
the URL with its user and password masked (`pipelines.registry.describe`).
"""

from __future__ import annotations

import os
from abc import ABC, abstractmethod
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar, Literal
from urllib.parse import urlsplit

import pandas as pd
from pydantic import BaseModel, ConfigDict, Field, model_validator

from data_contracts.mapping import TableMapping
from pipelines.registry import describe


class SourceError(ValueError):
    """A source cannot be read (file missing or unreadable, database unreachable, bad query)."""


class Source(BaseModel, ABC):
    """A place tables are read from; `table_keys` are the keys a table may use to name what
    to read there."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    table_keys: ClassVar[tuple[str, ...]]

    kind: str
    chunk_rows: int = Field(default=100_000, ge=1)

    def problems(self, rules: TableMapping) -> list[str]:
        """What a table's mapping lacks or has too much of for this kind of source."""
        given = [key for key in ("file", "table", "query") if getattr(rules, key) is not None]
        wrong = [key for key in given if key not in self.table_keys]
        if wrong:
            return [f"{', '.join(wrong)}: not for a {self.kind} source"]
        if len(given) != 1:
            return [f"name what to read with one of: {', '.join(self.table_keys)}"]
        return []

    @abstractmethod
    def read(self, rules: TableMapping, base: Path) -> Iterator[pd.DataFrame]:
        """The table's rows, a chunk at a time; raises `SourceError`."""

    @abstractmethod
    def describe(self, rules: TableMapping, base: Path) -> str:
        """Where the table is read from, fit for messages (no password)."""


class FileSource(Source):
    """A folder of files, one per table (`file:`), relative to the mapping file."""

    table_keys: ClassVar[tuple[str, ...]] = ("file",)
    folder: str = "."

    def path(self, rules: TableMapping, base: Path) -> Path:
        return base / self.folder / str(rules.file)

    def describe(self, rules: TableMapping, base: Path) -> str:
        return str(self.path(rules, base))

    def read(self, rules: TableMapping, base: Path) -> Iterator[pd.DataFrame]:
        path = self.path(rules, base)
        if not path.is_file():
            raise SourceError(f"{path}: file not found")
        try:
            yield from self.chunks(path)
        except Exception as error:  # pandas and pyarrow raise many unrelated types
            unreadable = (OSError, ValueError, UnicodeDecodeError, EOFError)
            if isinstance(error, unreadable) or type(error).__module__.startswith("pyarrow"):
                reason = f"{type(error).__name__}"
                raise SourceError(f"{path}: cannot be read as {self.kind} ({reason})") from None
            raise

    @abstractmethod
    def chunks(self, path: Path) -> Iterator[pd.DataFrame]: ...


class CsvSource(FileSource):
    """CSV files (also gzip-compressed, `.csv.gz`). Every value is read as text, so what a
    column means is decided by the mapping and the contract, not by guessing."""

    kind: Literal["csv"] = "csv"
    delimiter: str = Field(default=",", min_length=1, max_length=1)
    encoding: str = "utf-8"

    def chunks(self, path: Path) -> Iterator[pd.DataFrame]:
        with pd.read_csv(
            path,
            sep=self.delimiter,
            encoding=self.encoding,
            dtype=str,
            keep_default_na=False,
            na_values=[""],
            chunksize=self.chunk_rows,
        ) as reader:
            yield from reader


class ParquetSource(FileSource):
    """Parquet files, read a row group batch at a time."""

    kind: Literal["parquet"] = "parquet"

    def chunks(self, path: Path) -> Iterator[pd.DataFrame]:
        import pyarrow.parquet as pq

        with pq.ParquetFile(path) as file:
            if file.metadata.num_rows == 0:
                yield file.schema_arrow.empty_table().to_pandas()
            for batch in file.iter_batches(batch_size=self.chunk_rows):
                yield batch.to_pandas()


class SqlSource(Source):
    """A database reached through SQLAlchemy: per table, a `table:` name or a `query:`."""

    table_keys: ClassVar[tuple[str, ...]] = ("table", "query")
    kind: Literal["sql"] = "sql"
    url: str | None = None
    url_env: str | None = None

    @model_validator(mode="after")
    def _one_url(self) -> SqlSource:
        if (self.url is None) == (self.url_env is None):
            raise ValueError("give the database URL with url_env: (an environment variable) or url")
        if self.url is not None and urlsplit(self.url).password:
            raise ValueError(
                "url: carries a password; put the URL in an environment variable and name it "
                "with url_env:"
            )
        return self

    def resolved_url(self) -> str:
        if self.url is not None:
            return self.url
        value = os.environ.get(str(self.url_env))
        if not value:
            raise SourceError(f"environment variable {self.url_env} is not set (the database URL)")
        return value

    def describe(self, rules: TableMapping, base: Path) -> str:
        url = describe(self.resolved_url())
        return f"{url} table {rules.table}" if rules.table else f"{url} query"

    def read(self, rules: TableMapping, base: Path) -> Iterator[pd.DataFrame]:
        from sqlalchemy import create_engine, text
        from sqlalchemy.exc import SQLAlchemyError

        url = self.resolved_url()
        try:
            engine = create_engine(url)
        except (SQLAlchemyError, ValueError, ImportError) as error:
            reason = _why(error, url)
            raise SourceError(f"{describe(url)}: not a usable database URL ({reason})") from None
        try:
            with engine.connect() as connection:
                query = text(str(rules.query)) if rules.query else _select_all(str(rules.table))
                yield from pd.read_sql_query(query, connection, chunksize=self.chunk_rows)
        except (SQLAlchemyError, ValueError) as error:
            reason = _why(error, url)
            raise SourceError(f"{self.describe(rules, base)}: cannot be read ({reason})") from None
        finally:
            engine.dispose()


def _select_all(name: str) -> Any:
    """`SELECT * FROM name` with the name quoted by the database's own rules (`schema.table`
    names a table in a schema); no reflection, which not every dialect supports."""
    from sqlalchemy import literal_column, select, table

    schema, _, bare = name.rpartition(".")
    return select(literal_column("*")).select_from(table(bare, schema=schema or None))


def _why(error: BaseException, url: str) -> str:
    """The first line of a driver's error, with the URL's password removed if it appears."""
    cause = getattr(error, "orig", None) or error
    first = (str(cause).strip().splitlines() or [""])[0][:300]
    from sqlalchemy.engine import make_url

    try:
        password = make_url(url).password
    except Exception:  # an unparsable URL: nothing to remove
        password = None
    if password:
        first = first.replace(str(password), "***")
    return f"{type(cause).__name__}: {first}" if first else type(cause).__name__


SOURCE_KINDS: dict[str, type[Source]] = {
    "csv": CsvSource,
    "parquet": ParquetSource,
    "sql": SqlSource,
}
"""Every kind of source a mapping can name, by its `kind:`."""


def source_from(settings: dict[str, Any]) -> Source:
    """The source a mapping's `sources:` entry declares (pydantic errors name its keys)."""
    kind = settings.get("kind")
    if kind not in SOURCE_KINDS:
        raise ValueError(f"kind must be one of {', '.join(SOURCE_KINDS)}")
    return SOURCE_KINDS[kind].model_validate(settings)
