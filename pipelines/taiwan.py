"""Import the UCI "default of credit card clients" dataset (Taiwan, 2005) into the contracts.

Mapping (one row per card holder; months April to September 2005, Asia/Taipei):

| source column | becomes |
|---|---|
| `ID` | `debtor_id` and `account_id` (one credit-card account per client) |
| `SEX`, `AGE`, `MARRIAGE` | debtors `gender`, `age_band`, extra `marital_status`: audit-only |
| `EDUCATION` | debtors extra column `education` (not a model input by default) |
| `LIMIT_BAL` | statements `credit_limit` |
| `BILL_AMT1..6` | statements `balance`, one statement closing on the last day of each month |
| `PAY_0, PAY_2..6` | statements `status` and `days_past_due` (see below) |
| `PAY_AMT1..6` | payments on the 15th of each month, when above 0 |
| `default.payment.next.month` | `labels/default_next_month.parquet`, never a contract table |

Accounts are placed (scored) at 2005-10-01 00:00 local time, the start of the label month:
`original_balance` = `current_balance` = the September statement balance (0 if in credit);
Repayment status: -2 becomes `no_use`, -1 `paid_in_full`, 0 `revolving`, and k >= 1
(k months of delay) `delinquent` with `days_past_due` = 30k.
`delinquent_since` = September's months of delay counted back from placement (null when
current); `opened_at` is not in the data and is set to 2005-04-01, the first month observed
(or a day before delinquency began, if earlier). The label month is recoverable from
`labels/`: `as_of` 2005-10-01 and `window_end` 2005-11-01 local time, `defaulted` as published.

This importer stays code rather than a mapping file for `cobranza import tables`
(`data_contracts.mapping`): a mapping takes one source row to one contract row, while this
dataset needs a reshape, six statements and up to six payments from the monthly columns of
each client row, dates derived from the repayment status (delinquency counted back from
placement), and a label file outside the contracts. Expressing that declaratively would turn
the mapping into a programming language.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd

from data_contracts.schemas import empty_table
from pipelines.portfolio import (
    MANIFEST,
    check_output,
    recover_output,
    staged_output,
    write_json,
    write_tables,
)

TIMEZONE = "Asia/Taipei"
CURRENCY = "TWD"
CREDITOR = "taiwan-card-issuer"
LABEL = "default.payment.next.month"
# month number of each position 1..6 (1 = September ... 6 = April)
MONTHS = (9, 8, 7, 6, 5, 4)
STATUS_COLUMNS = ("PAY_0", "PAY_2", "PAY_3", "PAY_4", "PAY_5", "PAY_6")
BILL_COLUMNS = tuple(f"BILL_AMT{i}" for i in range(1, 7))
PAID_COLUMNS = tuple(f"PAY_AMT{i}" for i in range(1, 7))
REQUIRED_COLUMNS = (
    "ID",
    "LIMIT_BAL",
    "SEX",
    "EDUCATION",
    "MARRIAGE",
    "AGE",
    *STATUS_COLUMNS,
    *BILL_COLUMNS,
    *PAID_COLUMNS,
    LABEL,
)
AGE_BINS = (18, 25, 35, 45, 55, 65, 200)  # below 18: age band unknown
AGE_LABELS = ("18-24", "25-34", "35-44", "45-54", "55-64", "65+")
EDUCATION = {1: "graduate_school", 2: "university", 3: "high_school", 4: "other"}
MARITAL_STATUS = {1: "married", 2: "single", 3: "other"}
GENDER = {1: "male", 2: "female"}


class TaiwanFormatError(ValueError):
    """The file is not the UCI default-of-credit-card-clients CSV."""


def _local(timestamp: str) -> pd.Timestamp:
    return pd.Timestamp(timestamp, tz=TIMEZONE).tz_convert("UTC").as_unit("us")


PLACED_AT = _local("2005-10-01")
LABEL_WINDOW_END = _local("2005-11-01")
FIRST_MONTH = _local("2005-04-01")


def _status(codes: pd.Series) -> tuple[pd.Categorical, np.ndarray]:
    values = codes.to_numpy()
    status = np.select(
        [values == -2, values == -1, values == 0, values >= 1],
        ["no_use", "paid_in_full", "revolving", "delinquent"],
        default="",
    )
    categorical = pd.Categorical(
        np.where(status == "", None, status),
        categories=["no_use", "paid_in_full", "revolving", "delinquent"],
    )
    return categorical, np.where(values >= 1, values * 30, 0).astype(np.int64)


def _check_columns(raw: pd.DataFrame) -> None:
    """Refuse a frame without every column of the UCI file."""
    missing = [column for column in REQUIRED_COLUMNS if column not in raw.columns]
    if missing:
        raise TaiwanFormatError(f"missing column(s): {', '.join(missing)}")


def _debtors(raw: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """One debtor per client; sex, age, marriage and education are audit-only attributes."""
    n = len(ids)
    age_band = pd.cut(raw["AGE"], bins=AGE_BINS, labels=AGE_LABELS, right=False)
    return pd.DataFrame(
        {
            "debtor_id": ids,
            "timezone": pd.Categorical([TIMEZONE] * n),
            "region": pd.Categorical(["TW"] * n),
            "age_band": age_band.astype("category"),
            "gender": pd.Categorical(
                raw["SEX"].map(GENDER), categories=["female", "male", "other"]
            ),
            "marital_status": pd.Categorical(raw["MARRIAGE"].map(MARITAL_STATUS)),
            "education": pd.Categorical(raw["EDUCATION"].map(EDUCATION)),
        }
    )


def _accounts(raw: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """One credit-card account per client, placed at PLACED_AT with September's balance and
    delinquent since September's months of delay counted back from placement."""
    n = len(ids)
    months_late = raw["PAY_0"].clip(lower=0).astype(np.int64)
    starts = {k: PLACED_AT - pd.DateOffset(months=int(k)) for k in months_late.unique() if k > 0}
    delinquent_since = pd.Series(
        pd.to_datetime([starts.get(k, pd.NaT) for k in months_late], utc=True)
    ).astype("datetime64[us, UTC]")
    opened_at = delinquent_since - pd.Timedelta(days=1)
    opened_at = opened_at.where(opened_at < FIRST_MONTH, FIRST_MONTH).fillna(FIRST_MONTH)
    placed_balance = raw["BILL_AMT1"].clip(lower=0).astype(np.float64).to_numpy()
    days_past_due = ((PLACED_AT - delinquent_since).dt.days).fillna(0).astype(np.int64)
    return pd.DataFrame(
        {
            "account_id": ids,
            "debtor_id": ids,
            "product": pd.Categorical(["credit_card"] * n),
            "currency": pd.Categorical([CURRENCY] * n),
            "original_balance": placed_balance,
            "current_balance": placed_balance,
            "opened_at": opened_at.astype("datetime64[us, UTC]").array,
            "delinquent_since": delinquent_since.array,
            "charged_off_at": pd.Series(pd.NaT, index=range(n), dtype="datetime64[us, UTC]"),
            "placed_at": pd.Series([PLACED_AT] * n, dtype="datetime64[us, UTC]"),
            "days_past_due_at_placement": days_past_due.to_numpy(),
            "creditor": pd.Categorical([CREDITOR] * n),
        }
    )


def _monthly_statements(
    raw: pd.DataFrame, ids: np.ndarray, position: int, month: int
) -> pd.DataFrame:
    """The statements of one month (`position` 1 = September), closing on its last day."""
    n = len(ids)
    status, dpd = _status(raw[STATUS_COLUMNS[position - 1]])
    last_day = pd.Timestamp(f"2005-{month:02d}-01") + pd.offsets.MonthEnd(0)
    closing = _local(last_day.strftime("%Y-%m-%d"))
    return pd.DataFrame(
        {
            "statement_id": ids * 10 + position,
            "account_id": ids,
            "statement_at": pd.Series([closing] * n, dtype="datetime64[us, UTC]"),
            "balance": raw[BILL_COLUMNS[position - 1]].astype(np.float64).to_numpy(),
            "credit_limit": raw["LIMIT_BAL"].astype(np.float64).to_numpy(),
            "status": status,
            "days_past_due": dpd,
        }
    )


def _monthly_payments(
    raw: pd.DataFrame, ids: np.ndarray, position: int, month: int
) -> pd.DataFrame:
    """The payments of one month (`position` 1 = September) above 0, on the 15th at noon."""
    amount = raw[PAID_COLUMNS[position - 1]].astype(np.float64).to_numpy()
    paid = amount > 0
    return pd.DataFrame(
        {
            "payment_id": ids[paid] * 10 + position,
            "account_id": ids[paid],
            "paid_at": pd.Series(
                [_local(f"2005-{month:02d}-15 12:00")] * int(paid.sum()),
                dtype="datetime64[us, UTC]",
            ),
            "amount": amount[paid],
            "method": pd.Categorical(["other"] * int(paid.sum())),
        }
    )


def _statements(raw: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """Six monthly statements per account, in time order."""
    monthly = [
        _monthly_statements(raw, ids, position, month)
        for position, month in enumerate(MONTHS, start=1)
    ]
    table = pd.concat(monthly, ignore_index=True).sort_values(["statement_at", "statement_id"])
    return table.reset_index(drop=True)


def _payments(raw: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """The monthly payments above 0, in time order."""
    monthly = [
        _monthly_payments(raw, ids, position, month)
        for position, month in enumerate(MONTHS, start=1)
    ]
    table = pd.concat(monthly, ignore_index=True).sort_values(["paid_at", "payment_id"])
    return table.reset_index(drop=True)


def _labels(raw: pd.DataFrame, ids: np.ndarray) -> pd.DataFrame:
    """The published default label of the month after placement (never a contract table)."""
    n = len(ids)
    return pd.DataFrame(
        {
            "account_id": ids.astype(str).astype(object),  # ids are text, as in the contracts
            "as_of": pd.Series([PLACED_AT] * n, dtype="datetime64[us, UTC]"),
            "window_end": pd.Series([LABEL_WINDOW_END] * n, dtype="datetime64[us, UTC]"),
            "defaulted": raw[LABEL].astype(bool).to_numpy(),
        }
    )


def taiwan_to_tables(raw: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    """Contract tables and the label table from the raw UCI frame (pure)."""
    _check_columns(raw)
    ids = raw["ID"].astype(np.int64).to_numpy()
    tables = {
        "debtors": _debtors(raw, ids),
        "accounts": _accounts(raw, ids),
        "offers": empty_table("offers"),
        "payments": _payments(raw, ids),
        "promises": empty_table("promises"),
        "contacts": empty_table("contacts"),
        "statements": _statements(raw, ids),
    }
    return tables, _labels(raw, ids)


UNREADABLE = (pd.errors.ParserError, UnicodeDecodeError, pd.errors.EmptyDataError)


def read_taiwan_csv(path: Path) -> pd.DataFrame:
    """Read the CSV (also the variant with an extra first header row of X1..X23)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"{path}: file not found")
    try:
        raw = pd.read_csv(path)
        if "ID" not in raw.columns and len(raw) and "ID" in set(raw.iloc[0].astype(str)):
            raw = pd.read_csv(path, header=1)
    except (*UNREADABLE, OSError, EOFError) as error:  # OSError, EOFError: a broken gzip
        raise TaiwanFormatError(
            f"{path}: cannot be read as CSV ({type(error).__name__})"
        ) from error
    missing = [column for column in REQUIRED_COLUMNS if column not in raw.columns]
    if missing:
        raise TaiwanFormatError(f"{path}: missing column(s) {', '.join(missing)}")
    numbers = raw[list(REQUIRED_COLUMNS)].apply(pd.to_numeric, errors="coerce")
    checks = (
        (numbers.isna() | ~np.isfinite(numbers), "value is missing or not a number"),
        ((numbers % 1 != 0) | (numbers.abs() > 2**53), "value is not a whole number"),
        (
            numbers[list(STATUS_COLUMNS)].lt(-2) | numbers[list(STATUS_COLUMNS)].gt(9),
            "repayment status outside -2..9",
        ),
        (
            numbers[["ID"]].lt(1) | numbers[["ID"]].duplicated(keep="first").to_frame("ID"),
            "ID must be a positive number used once",
        ),
        (~numbers[[LABEL]].isin([0, 1]), "label must be 0 or 1"),
        (numbers[["LIMIT_BAL"]].lt(0), "credit limit below 0"),
    )
    for bad, message in checks:
        bad = bad.fillna(False).astype(bool)
        if bad.to_numpy().any():
            row = int(bad.any(axis=1).to_numpy().argmax())
            column = bad.columns[bad.iloc[row].to_numpy()][0]
            raise TaiwanFormatError(f"{path}: row {row + 2}, column {column}: {message}")
    return numbers.astype(np.int64)


def import_taiwan_to_folder(
    csv: Path, out: Path, overwrite: bool = False, notify: Callable[[str], None] | None = None
) -> dict[str, object]:
    """Read the CSV, map it, and write the portfolio folder (tables, labels, manifest);
    `notify` hears what an interrupted earlier run left and was cleaned up."""
    recover_output(Path(out), notify)
    check_output(Path(out), overwrite, keep=[Path(csv)])
    raw = read_taiwan_csv(csv)
    tables, labels = taiwan_to_tables(raw)
    manifest = {
        "source": "UCI default of credit card clients (dataset 350), CC BY 4.0",
        "data_end": PLACED_AT.isoformat(),
        "currency": CURRENCY,
        "label": {
            "file": "labels/default_next_month.parquet",
            "as_of": PLACED_AT.isoformat(),
            "window_end": LABEL_WINDOW_END.isoformat(),
            "default_rate": round(float(labels["defaulted"].mean()), 4),
        },
        "rows": {name: len(frame) for name, frame in tables.items()},
    }
    with staged_output(Path(out), overwrite, keep=[Path(csv)], notify=notify) as folder:
        write_tables(folder, tables)
        write_tables(folder / "labels", {"default_next_month": labels})
        write_json(folder / MANIFEST, manifest)
    return manifest
