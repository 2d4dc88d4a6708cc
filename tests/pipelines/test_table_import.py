"""`cobranza import tables`: an agency's own tables, under its own column names and codes, come
back as the contract tables, from PostgreSQL, DuckDB, CSV and parquet."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.mapping import MappingError, map_table, parse_mapping
from data_contracts.schemas import CONTRACTS, ID_COLUMNS, contract_columns
from data_contracts.validation import validate_tables
from pipelines.portfolio import (
    MANIFEST,
    OffPolicyRefused,
    read_manifest,
    require_action_probability,
    validate_portfolio,
)
from pipelines.table_import import import_tables
from simulator import SimulationConfig, simulate_portfolio
from tests.databases import Server, postgres_server
from training.policy import off_policy_estimates

COBRANZA = str(Path(sys.executable).with_name("cobranza"))
pytestmark = pytest.mark.integration

# the dialer's own result codes
RESULT_CODES = {
    "NA": "no_answer",
    "VM": "voicemail",
    "WP": "wrong_party",
    "RPC": "right_party_contact",
    "PTP": "promise_to_pay",
    "RF": "refused",
    "DSP": "dispute",
    "DLV": "delivered",
    "OPN": "opened",
    "CLK": "clicked",
    "BNC": "bounced",
    "OPT": "opted_out",
}
SEX_CODES = {"F": "female", "M": "male", "X": "other"}
DIALER_ZONE = "America/Bogota"  # the dialer logs naive local times (no DST there)


def cobranza(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [COBRANZA, *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "COLUMNS": "200", **env},
    )


@pytest.fixture(scope="module")
def portfolio() -> tuple[dict[str, pd.DataFrame], str]:
    simulated = simulate_portfolio(
        SimulationConfig(accounts=60, seed=21, horizon_days=90, placement_days=60)
    )
    return simulated.tables, str(simulated.manifest["data_end"])


def agency_tables(tables: dict[str, pd.DataFrame]) -> dict[str, pd.DataFrame]:
    """The portfolio as an agency's systems would hold it: other names, codes and units."""
    sex = {value: code for code, value in SEX_CODES.items()}
    outcome = {value: code for code, value in RESULT_CODES.items()}
    contacts = tables["contacts"]
    local = contacts["attempted_at"].dt.tz_convert(DIALER_ZONE).dt.tz_localize(None)
    accounts = tables["accounts"]
    return {
        "clients": tables["debtors"]
        .rename(columns={"debtor_id": "client_no", "timezone": "tz", "region": "state"})
        .assign(gender=lambda f: f["gender"].astype(object).map(sex)),
        "core_accounts": accounts.rename(
            columns={"account_id": "acct_no", "debtor_id": "client_no", "currency": "ccy"}
        ).assign(original_balance=(accounts["original_balance"] * 100).round().astype(np.int64)),
        "offers": tables["offers"],
        "ledger": tables["payments"].rename(columns={"payment_id": "pay_id", "amount": "amt"}),
        "promises": tables["promises"],
        "account_events": tables["account_events"],
        "dialer_calls": pd.DataFrame(
            {
                "call_id": contacts["contact_id"],
                "acct": contacts["account_id"],
                "chan": contacts["channel"].astype(str),
                "dir": contacts["direction"].astype(str),
                "called_at": local,
                "result": contacts["outcome"].astype(object).map(outcome),
                "offer_ref": contacts["offer_id"],
                "p_logged": contacts["action_probability"],
            }
        ),
    }


def mapping_text(sources: str, data_end: str, read: dict[str, str], probability: str) -> str:
    """A mapping of the agency's tables; `read` says what each table reads (file/table/query)."""
    return f"""
name: agency core system and dialer
data_end: {data_end}
sources:
{sources}
tables:
  debtors:
    {read["debtors"]}
    columns:
      debtor_id: client_no
      timezone: tz
      region: state
      age_band: age_band
      gender: {{column: gender, values: {json.dumps(SEX_CODES)}}}
  accounts:
    {read["accounts"]}
    columns:
      account_id: acct_no
      debtor_id: client_no
      product: product
      currency: ccy
      original_balance: {{column: original_balance, multiply: 0.01}}
      current_balance: current_balance
      opened_at: opened_at
      delinquent_since: delinquent_since
      charged_off_at: charged_off_at
      placed_at: placed_at
      days_past_due_at_placement: days_past_due_at_placement
      creditor: creditor
  account_events:
    {read["account_events"]}
    columns: {{event_id: event_id, account_id: account_id, occurred_at: occurred_at, kind: kind,
      amount_forgiven: amount_forgiven}}
  offers:
    {read["offers"]}
    columns: {{offer_id: offer_id, account_id: account_id, kind: kind, discount_pct: discount_pct,
      installments: installments, offered_at: offered_at, expires_at: expires_at,
      accepted_at: accepted_at}}
  payments:
    {read["payments"]}
    columns: {{payment_id: payment_id, account_id: account_id, paid_at: paid_at,
      amount: amount, method: method}}
  promises:
    {read["promises"]}
    columns: {{promise_id: promise_id, account_id: account_id, made_at: made_at,
      due_at: due_at, amount: amount, kept: kept, offer_id: offer_id}}
  contacts:
    {read["contacts"]}
    timezone: {DIALER_ZONE}
    columns:
      contact_id: call_id
      account_id: acct
      channel: chan
      direction: dir
      attempted_at: called_at
      outcome:
        column: result
        values: {json.dumps(RESULT_CODES)}
      offer_id: offer_ref
    action_probability: {probability}
"""


SQL_READ = {
    "debtors": "table: clients",
    "accounts": "table: core_accounts",
    "offers": "table: offers",
    # the ledger's own names, renamed in SQL
    "payments": "query: SELECT pay_id AS payment_id, account_id, paid_at, amt AS amount, "
    "method FROM ledger ORDER BY pay_id",
    "promises": "table: promises",
    "contacts": "table: dialer_calls",
    "account_events": "table: account_events",
}


def comparable(frame: pd.DataFrame, table: str) -> pd.DataFrame:
    """Contract columns only, rows by id, categories as plain text."""
    columns = list(contract_columns(table))
    frame = frame[columns].sort_values(ID_COLUMNS[table]).reset_index(drop=True)
    return frame.astype({c: object for c in columns if frame[c].dtype == "category"})


def assert_round_trip(folder: Path, tables: dict[str, pd.DataFrame], data_end: str) -> None:
    expected = validate_tables(tables, data_end=pd.Timestamp(data_end))
    imported = validate_portfolio(folder)
    assert imported.quarantined_rows == 0, imported.summary()
    for table in CONTRACTS:
        pd.testing.assert_frame_equal(
            comparable(imported.valid[table], table), comparable(expected.valid[table], table)
        )
    assert len(imported.valid["contacts"]) == len(tables["contacts"]) > 0


@pytest.fixture(scope="module")
def postgres() -> Iterator[Server]:
    with postgres_server() as server:
        yield server


def test_postgres_round_trip(
    tmp_path: Path, postgres: Server, portfolio: tuple[dict[str, pd.DataFrame], str]
) -> None:
    import sqlalchemy as sa

    tables, data_end = portfolio
    engine = sa.create_engine(postgres.url)
    with engine.begin() as connection:
        for name, frame in agency_tables(tables).items():
            frame.to_sql(name, connection, index=False, if_exists="replace")
    engine.dispose()
    sources = "  core: {kind: sql, url_env: AGENCY_DB_URL, chunk_rows: 100}"
    mapping = tmp_path / "agency.yaml"
    mapping.write_text(mapping_text(sources, data_end, SQL_READ, "{column: p_logged}"))

    done = cobranza("import", "tables", "--mapping", str(mapping), "--out", str(tmp_path / "pf"),
                    AGENCY_DB_URL=postgres.url)  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert_round_trip(tmp_path / "pf", tables, data_end)
    manifest = read_manifest(tmp_path / "pf")
    assert manifest["action_probability"] == "column"
    assert manifest["unmapped_values"] == []
    assert manifest["rows"] == {**{t: len(f) for t, f in tables.items()}, "statements": 0}

    # a failing query: the error names the database with the password masked
    mapping.write_text(mapping.read_text().replace("FROM ledger", "FROM no_such_ledger"))
    failed = cobranza("import", "tables", "--mapping", str(mapping), "--out",
                      str(tmp_path / "pf2"), AGENCY_DB_URL=postgres.url)  # fmt: skip
    assert failed.returncode == 2
    assert "postgresql+psycopg://***@127.0.0.1" in failed.stderr
    assert "no_such_ledger" in failed.stderr
    assert postgres.password not in failed.stderr + failed.stdout
    assert not (tmp_path / "pf2").exists()


def test_duckdb_round_trip_and_reruns_are_idempotent(
    tmp_path: Path, portfolio: tuple[dict[str, pd.DataFrame], str]
) -> None:
    import duckdb

    tables, data_end = portfolio
    database = tmp_path / "agency.duckdb"
    with duckdb.connect(str(database)) as connection:
        for name, frame in agency_tables(tables).items():
            connection.register("frame", frame)
            connection.execute(f"CREATE TABLE {name} AS SELECT * FROM frame")
            connection.unregister("frame")
    sources = f"  core: {{kind: sql, url: 'duckdb:///{database}'}}"
    mapping = tmp_path / "agency.yaml"
    mapping.write_text(mapping_text(sources, data_end, SQL_READ, "{column: p_logged}"))

    first = import_tables(mapping, tmp_path / "pf")
    assert_round_trip(tmp_path / "pf", tables, data_end)
    written = {p.name: p.read_bytes() for p in (tmp_path / "pf").glob("*.*")}
    import_tables(mapping, tmp_path / "pf", overwrite=True)
    again = {p.name: p.read_bytes() for p in (tmp_path / "pf").glob("*.*")}
    assert sorted(written) == sorted(again) and {MANIFEST, "contacts.parquet"} <= set(written)
    assert written == again
    assert first.manifest == read_manifest(tmp_path / "pf")


def tiny_sources(folder: Path, tables: dict[str, pd.DataFrame]) -> None:
    """The hand-made portfolio as an export: CSV with local day-first dates and cents, and
    parquet files as the contracts name them."""
    folder.mkdir()
    chicago = "America/Chicago"
    debtors = tables["debtors"].assign(gender=lambda f: f["gender"].astype(object).map(
        {v: k for k, v in SEX_CODES.items()}))  # fmt: skip
    debtors.rename(columns={"debtor_id": "ID"}).to_csv(folder / "debtors.csv", index=False)
    accounts = tables["accounts"].copy()
    for column in ("opened_at", "delinquent_since", "charged_off_at", "placed_at"):
        accounts[column] = accounts[column].dt.tz_convert(chicago).dt.strftime("%d/%m/%Y %H:%M")
    accounts["balance_cents"] = (accounts.pop("original_balance") * 100).round().astype(int)
    accounts[["creditor_group", "creditor_code"]] = (
        accounts.pop("creditor").astype(str).str.split("-", expand=True)
    )
    accounts.to_csv(folder / "accounts.csv", index=False)
    contacts = tables["contacts"].assign(
        outcome=lambda f: f["outcome"].astype(object).map({v: k for k, v in RESULT_CODES.items()})
    )
    contacts.to_csv(folder / "contacts.csv", index=False)
    for name in ("offers", "payments", "promises", "statements", "account_events"):
        tables[name].to_parquet(folder / f"{name}.parquet", index=False)


TINY_MAPPING = """
name: tiny export
data_end: 2024-08-01 00:00     # naive: read in the mapping's time zone
timezone: America/Chicago
sources:
  export: {kind: csv, folder: export}
  warehouse: {kind: parquet, folder: export}
tables:
  debtors:
    source: export
    file: debtors.csv
    columns:
      debtor_id: ID
      timezone: timezone
      region: region
      age_band: age_band
      gender: {column: gender, values: {F: female, M: male, X: other}}
  accounts:
    source: export
    file: accounts.csv
    columns:
      account_id: account_id
      debtor_id: debtor_id
      product: product
      currency: currency
      original_balance: {column: balance_cents, multiply: 0.01}
      current_balance: current_balance
      opened_at: {column: opened_at, format: "%d/%m/%Y %H:%M"}
      delinquent_since: {column: delinquent_since, format: "%d/%m/%Y %H:%M"}
      charged_off_at: {column: charged_off_at, format: "%d/%m/%Y %H:%M"}
      placed_at: {column: placed_at, format: "%d/%m/%Y %H:%M"}
      days_past_due_at_placement: days_past_due_at_placement
      creditor: {concat: [creditor_group, creditor_code], separator: "-"}
  contacts:
    source: export
    file: contacts.csv
    columns:
      contact_id: contact_id
      account_id: account_id
      channel: channel
      direction: direction
      attempted_at: attempted_at
      outcome: {column: outcome, values: {NA: no_answer, PTP: promise_to_pay, DLV: delivered,
                                          DSP: dispute}}
      offer_id: offer_id
    action_probability: {column: action_probability}
  offers: {source: warehouse, file: offers.parquet, columns: {offer_id: offer_id,
    account_id: account_id, kind: kind, discount_pct: discount_pct,
    installments: installments, offered_at: offered_at, expires_at: expires_at,
    accepted_at: accepted_at}}
  payments: {source: warehouse, file: payments.parquet, columns: {payment_id: payment_id,
    account_id: account_id, paid_at: paid_at, amount: amount, method: method}}
  promises: {source: warehouse, file: promises.parquet, columns: {promise_id: promise_id,
    account_id: account_id, made_at: made_at, due_at: due_at, amount: amount, kept: kept,
    offer_id: offer_id}}
  statements:
    source: warehouse
    file: statements.parquet
    columns: {statement_id: statement_id, account_id: account_id, statement_at: statement_at,
      balance: balance, status: status, days_past_due: days_past_due}
    defaults: {credit_limit: 2000}
  account_events:
    source: warehouse
    file: account_events.parquet
    columns: {event_id: event_id, account_id: account_id, occurred_at: occurred_at, kind: kind,
      amount_forgiven: amount_forgiven}
"""


@pytest.fixture
def tiny_export(tmp_path: Path, tables: dict[str, pd.DataFrame]) -> Path:
    tiny_sources(tmp_path / "export", tables)
    mapping = tmp_path / "tiny.yaml"
    mapping.write_text(TINY_MAPPING)
    return mapping


def test_csv_and_parquet_mapping(
    tmp_path: Path, tiny_export: Path, tables: dict[str, pd.DataFrame]
) -> None:
    report = import_tables(tiny_export, tmp_path / "pf")
    assert report.unmapped == []
    assert report.manifest["data_end"] == "2024-08-01T05:00:00+00:00"  # Chicago, daylight time
    done = cobranza("validate", str(tmp_path / "pf"))
    assert done.returncode == 0, done.stdout + done.stderr
    imported = validate_portfolio(tmp_path / "pf").valid
    expected = validate_tables(tables).valid  # ids as text, as validation reads them
    for table in CONTRACTS:
        pd.testing.assert_frame_equal(
            comparable(imported[table], table), comparable(expected[table], table)
        )


def test_dry_run_prints_the_quarantine_per_rule_and_writes_nothing(
    tmp_path: Path, tiny_export: Path
) -> None:
    export = tiny_export.parent / "export"
    payments = pd.read_parquet(export / "payments.parquet")
    payments.loc[1, "amount"] = -5.0
    payments.to_parquet(export / "payments.parquet", index=False)
    contacts = pd.read_csv(export / "contacts.csv", dtype=str)
    contacts.loc[0, "outcome"] = "ZZ"  # a code the mapping does not know
    contacts.loc[2, "attempted_at"] = "yesterday"
    contacts.to_csv(export / "contacts.csv", index=False)
    before = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*"))

    done = cobranza("import", "tables", "--mapping", str(tiny_export), "--dry-run",
                    "--out", str(tmp_path / "pf"))  # fmt: skip
    assert done.returncode == 1, done.stdout + done.stderr
    assert "amount:greater_than(0) (1)" in done.stdout
    assert "outcome:isin (1)" in done.stdout
    assert "attempted_at:type (1)" in done.stdout
    assert "promise_quarantined" not in done.stdout
    unmapped = [line for line in done.stdout.splitlines() if " ZZ " in line]
    assert len(unmapped) == 1 and "contacts" in unmapped[0] and "outcome" in unmapped[0]
    assert "nothing written" in done.stdout
    assert sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*")) == before


def test_a_bad_mapping_names_the_line_and_key(tmp_path: Path, tiny_export: Path) -> None:
    text = tiny_export.read_text().replace(
        "      region: region\n", "      region: region\n      regoin_code: region\n"
    )
    text = text.replace("  export: {kind: csv, folder: export}",
                        "  export: {kind: csv, folder: export, delimeter: ';'}")  # fmt: skip
    tiny_export.write_text(text)
    line = text.splitlines().index("      regoin_code: region") + 1
    done = cobranza(
        "import", "tables", "--mapping", str(tiny_export), "--out", str(tmp_path / "pf")
    )
    assert done.returncode == 2
    errors = " ".join(done.stderr.split())
    assert f"line {line}, tables.debtors.columns.regoin_code: not a column of debtors" in errors
    assert "sources.export.delimeter: unknown key 'delimeter' for a csv source" in errors
    assert not (tmp_path / "pf").exists()

    with pytest.raises(MappingError, match=r"m.yaml, line 6, tables.debtors.colums: unknown key"):
        parse_mapping(
            "name: x\ndata_end: 2024-01-01\nsources: {a: {kind: csv}}\n"
            "tables:\n  debtors:\n    colums: {}\n",
            "m.yaml",
        )
    with pytest.raises(MappingError, match=r"line 4, sources.db: url: carries a password"):
        tiny_export.write_text(
            "name: x\ndata_end: 2024-01-01\nsources:\n"
            "  db: {kind: sql, url: 'postgresql://me:secret@db/x'}\n"
            "tables: {debtors: {table: d}, accounts: {table: a}}\n"
        )
        import_tables(tiny_export, tmp_path / "pf")


def test_unmapped_values_are_counted_per_column() -> None:
    mapping, _ = parse_mapping(
        """
name: dialer
data_end: 2024-08-01T00:00:00Z
sources: {d: {kind: csv}}
tables:
  debtors: {file: x, columns: {debtor_id: a, timezone: a, region: a}}
  accounts: {file: x, columns: {account_id: a, debtor_id: a, product: a, currency: a,
    original_balance: a, current_balance: a, opened_at: a, placed_at: a,
    days_past_due_at_placement: a, creditor: a}}
  contacts:
    file: x
    columns:
      contact_id: id
      account_id: id
      channel: {value: call}
      direction: {value: outbound}
      attempted_at: at
      outcome: {column: code, values: {1: no_answer, 2: promise_to_pay, "no": refused}}
      offer_id: {column: code, values: {1: ~}, unmapped: "null"}
    action_probability: unknown
""",
        "dialer.yaml",
    )
    raw = pd.DataFrame(
        {
            "id": ["1", "2", "3", "4", "5", "6"],
            "at": ["2024-07-01T10:00"] * 6,
            "code": ["1", "7", "no", "7", None, "X"],
        }
    )
    chunks = [raw.iloc[:3], raw.iloc[3:]]  # counts add up across chunks
    frame, unmapped = map_table("contacts", mapping.tables["contacts"], "UTC", chunks)
    outcome_strays = [(u.column, u.value, u.count) for u in unmapped if u.column == "outcome"]
    assert outcome_strays == [("outcome", "7", 2), ("outcome", "X", 1)]
    assert {(u.column, u.source) for u in unmapped} == {("outcome", "code"), ("offer_id", "code")}
    outcomes = [None if pd.isna(value) else value for value in frame["outcome"]]
    assert outcomes == ["no_answer", "7", "refused", "7", None, "X"]
    assert frame["offer_id"].isna().all()  # unmapped: null
    assert frame["action_probability"].isna().all()


def test_unknown_action_probability_refuses_off_policy_estimates(
    tmp_path: Path, tiny_export: Path
) -> None:
    tiny_export.write_text(
        tiny_export.read_text().replace(
            "action_probability: {column: action_probability}", "action_probability: unknown"
        )
    )
    import_tables(tiny_export, tmp_path / "pf")
    assert read_manifest(tmp_path / "pf")["action_probability"] == "unknown"
    assert validate_portfolio(tmp_path / "pf").valid["contacts"]["action_probability"].isna().all()
    with pytest.raises(OffPolicyRefused, match="action_probability is unknown"):
        require_action_probability(tmp_path / "pf")

    done = cobranza("evaluate", "--data", str(tmp_path / "pf"), "--which", "next-best-action")
    assert done.returncode == 2
    assert "off-policy estimates refused" in " ".join(done.stderr.split())

    with pytest.raises(ValueError, match="2 of 3 are missing or not above 0"):
        off_policy_estimates(
            np.ones(3), np.array([0.5, np.nan, 0.0]), np.ones(3), np.ones(3), np.ones(3)
        )
