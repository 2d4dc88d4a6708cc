"""The Taiwan import on the real file: everything kept, nothing invented, label recoverable."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from data_contracts.validation import validate_tables
from pipelines.taiwan import (
    BILL_COLUMNS,
    PAID_COLUMNS,
    STATUS_COLUMNS,
    TaiwanFormatError,
    read_taiwan_csv,
    taiwan_to_tables,
)


@pytest.fixture(scope="module")
def raw(taiwan_csv: Path) -> pd.DataFrame:
    return read_taiwan_csv(taiwan_csv)


@pytest.fixture(scope="module")
def imported(raw: pd.DataFrame) -> tuple[dict[str, pd.DataFrame], pd.DataFrame]:
    return taiwan_to_tables(raw)


def test_every_client_becomes_a_valid_debtor_and_account(
    raw: pd.DataFrame, imported: tuple[dict[str, pd.DataFrame], pd.DataFrame]
) -> None:
    tables, _ = imported
    assert len(raw) == 30_000
    result = validate_tables(tables)
    assert result.quarantined_rows == 0, result.summary()
    assert len(result.valid["debtors"]) == len(result.valid["accounts"]) == 30_000
    assert len(result.valid["statements"]) == 6 * 30_000
    assert len(result.valid["payments"]) == int((raw[list(PAID_COLUMNS)] > 0).to_numpy().sum())


def test_the_label_month_is_recoverable(
    raw: pd.DataFrame, imported: tuple[dict[str, pd.DataFrame], pd.DataFrame]
) -> None:
    tables, labels = imported
    assert labels["defaulted"].mean() == pytest.approx(0.2212, abs=1e-4)
    assert (labels["as_of"] == tables["accounts"]["placed_at"]).all()
    assert (labels["window_end"] - labels["as_of"]).dt.days.eq(31).all()
    events = pd.concat([tables["payments"]["paid_at"], tables["statements"]["statement_at"]])
    assert events.max() < labels["as_of"].min()  # no event from the label month leaks in


def test_statements_and_payments_give_back_the_source_columns(
    raw: pd.DataFrame, imported: tuple[dict[str, pd.DataFrame], pd.DataFrame]
) -> None:
    tables, _ = imported
    statements = tables["statements"].assign(position=lambda f: f["statement_id"] % 10)
    bills = statements.pivot(index="account_id", columns="position", values="balance")
    np.testing.assert_array_equal(
        bills.loc[raw["ID"]].to_numpy(), raw[list(BILL_COLUMNS)].to_numpy()
    )
    delays = statements.pivot(index="account_id", columns="position", values="days_past_due")
    expected = raw[list(STATUS_COLUMNS)].clip(lower=0).to_numpy() * 30
    np.testing.assert_array_equal(delays.loc[raw["ID"]].to_numpy(), expected)
    paid = tables["payments"].assign(position=lambda f: f["payment_id"] % 10)
    amounts = paid.pivot(index="account_id", columns="position", values="amount").reindex(
        index=raw["ID"], columns=range(1, 7)
    )
    np.testing.assert_array_equal(amounts.fillna(0).to_numpy(), raw[list(PAID_COLUMNS)].to_numpy())
    limits = statements.groupby("account_id", observed=True)["credit_limit"].first().loc[raw["ID"]]
    np.testing.assert_array_equal(limits.to_numpy(), raw["LIMIT_BAL"].to_numpy())


def test_protected_attributes_stay_on_the_debtor(
    raw: pd.DataFrame, imported: tuple[dict[str, pd.DataFrame], pd.DataFrame]
) -> None:
    tables, _ = imported
    debtors = tables["debtors"].set_index("debtor_id").loc[raw["ID"]]
    assert (
        debtors["gender"].astype(str).to_numpy() == np.where(raw["SEX"] == 1, "male", "female")
    ).all()
    assert debtors["marital_status"].isna().sum() == (~raw["MARRIAGE"].isin([1, 2, 3])).sum()
    for name in ("accounts", "payments", "statements"):
        assert not {"gender", "age_band", "marital_status", "SEX", "AGE"} & set(
            tables[name].columns
        )


def test_a_file_that_is_not_the_dataset_is_refused(tmp_path: Path, raw: pd.DataFrame) -> None:
    wrong = tmp_path / "wrong.csv"
    raw.drop(columns=["PAY_AMT3"]).head(5).to_csv(wrong, index=False)
    with pytest.raises(TaiwanFormatError, match=r"missing column.*PAY_AMT3"):
        read_taiwan_csv(wrong)
    broken = tmp_path / "broken.csv"
    frame = raw.head(5).astype(object)
    frame.loc[3, "BILL_AMT2"] = "n/a"
    frame.to_csv(broken, index=False)
    with pytest.raises(TaiwanFormatError, match="row 5, column BILL_AMT2"):
        read_taiwan_csv(broken)


def test_the_two_header_variant_is_read(tmp_path: Path, raw: pd.DataFrame) -> None:
    variant = tmp_path / "variant.csv"
    header = ",".join(["", *[f"X{i}" for i in range(1, 24)], "Y"])
    variant.write_text(header + "\n" + raw.head(3).to_csv(index=False))
    assert list(read_taiwan_csv(variant)["ID"]) == [1, 2, 3]


@pytest.mark.parametrize(
    ("column", "value", "message"),
    [
        ("PAY_0", -5, "repayment status outside -2..9"),
        ("ID", 1.5, "value is not a whole number"),
        ("ID", 2, "ID must be a positive number used once"),
        ("PAY_AMT1", 1e300, "value is not a whole number"),
        ("default.payment.next.month", 3, "label must be 0 or 1"),
    ],
)
def test_values_the_dataset_cannot_hold_are_refused_at_import(
    tmp_path: Path, raw: pd.DataFrame, column: str, value: float, message: str
) -> None:
    frame = raw.head(6).astype(float)
    frame.loc[3, column] = value
    path = tmp_path / "bad.csv"
    frame.to_csv(path, index=False)
    with pytest.raises(TaiwanFormatError, match=rf"row 5, column {column}: {message}"):
        read_taiwan_csv(path)


def test_minors_have_no_age_band(raw: pd.DataFrame) -> None:
    young = raw.head(3).assign(AGE=[5, 18, 70])
    tables, _ = taiwan_to_tables(young)
    bands = tables["debtors"]["age_band"]
    assert bands.isna().iloc[0]
    assert list(bands.iloc[1:].astype(str)) == ["18-24", "65+"]
