"""Snapshots, the Feast store, point-in-time training sets and online reads, for real."""

from __future__ import annotations

import itertools
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pipelines.feature_store import (
    FeatureStoreError,
    OnlineFeatures,
    OnlineSnapshot,
    decode_value_column,
    materialize_latest,
    snapshot_times,
    training_set,
)
from pipelines.features_build import FeatureBuildError, build_snapshots
from pipelines.portfolio import write_tables
from pipelines.simulate import simulate_to_folder
from simulator import SimulationConfig

pytestmark = pytest.mark.integration


@pytest.fixture(scope="module")
def built(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("store") / "portfolio"
    simulate_to_folder(
        SimulationConfig(accounts=300, seed=8, horizon_days=150, placement_days=100), folder
    )
    build_snapshots(folder, pd.Timestamp("2025-02-03", tz="UTC"), None, every="14D")
    return folder


def _labels(folder: Path) -> pd.DataFrame:
    accounts = pd.read_parquet(folder / "accounts.parquet")
    rng = np.random.default_rng(0)
    rows = accounts.sample(200, replace=True, random_state=1)[["account_id", "debtor_id"]]
    offsets = pd.to_timedelta(rng.integers(0, 150 * 24, len(rows)), unit="h")
    rows = rows.assign(
        event_timestamp=pd.Timestamp("2025-01-06", tz="UTC") + offsets,
        label=rng.integers(0, 2, len(rows)),
    )
    # an exact duplicate row and a row before any snapshot must both survive
    early = rows.iloc[[0]].assign(event_timestamp=pd.Timestamp("2025-01-10", tz="UTC"))
    return pd.concat([rows, rows.iloc[[3]], early], ignore_index=True)


def test_build_writes_snapshots_and_is_idempotent(built: Path) -> None:
    times = snapshot_times(built)
    assert times[0] == pd.Timestamp("2025-02-03", tz="UTC")
    assert all(b - a == pd.Timedelta(days=14) for a, b in itertools.pairwise(times))
    before = sorted(p.name for p in (built / "features" / "account").iterdir())
    first = pd.read_parquet(built / "features" / "account" / before[0])
    build_snapshots(built, pd.Timestamp("2025-02-03", tz="UTC"), None, every="14D")
    assert sorted(p.name for p in (built / "features" / "account").iterdir()) == before
    pd.testing.assert_frame_equal(
        pd.read_parquet(built / "features" / "account" / before[0]), first
    )


@pytest.mark.parametrize("engine", ["direct", "feast"])
def test_training_set_keeps_every_row_and_only_looks_back(built: Path, engine: str) -> None:
    labels = _labels(built)
    joined = training_set(built, labels, engine=engine)
    assert len(joined) == len(labels)
    pd.testing.assert_series_equal(joined["label"], labels["label"], check_names=False)
    pd.testing.assert_series_equal(joined["account_id"], labels["account_id"], check_names=False)
    # each row got the latest snapshot at or before its time: recompute it from the files
    times = pd.Series(snapshot_times(built))
    for row in joined.sample(25, random_state=2).itertuples():
        eligible = times[
            (times <= row.event_timestamp) & (times > row.event_timestamp - pd.Timedelta(days=35))
        ]
        if eligible.empty:
            assert np.isnan(row.days_since_placement)
            continue
        name = "as_of=" + eligible.iloc[-1].strftime("%Y-%m-%dT%H_%M_%S") + ".parquet"
        snapshot = pd.read_parquet(built / "features" / "account" / name).set_index("account_id")
        if row.account_id in snapshot.index:
            assert row.days_since_placement == pytest.approx(
                snapshot.loc[row.account_id, "days_since_placement"]
            )
    assert joined.iloc[-1][["call_attempts_7d", "debtor_accounts_placed"]].isna().all()


def _text(values: pd.Series) -> pd.Series:
    return values.astype(str).where(values.notna(), "-")


def test_both_engines_agree(built: Path) -> None:
    labels = _labels(built)
    direct = training_set(built, labels, engine="direct")
    feast = training_set(built, labels, engine="feast")[direct.columns]
    for column in direct.columns:
        if direct[column].dtype.kind in "fi":
            np.testing.assert_allclose(
                direct[column].astype(float),
                feast[column].astype(float),
                equal_nan=True,
                err_msg=column,
            )
        else:
            same = _text(direct[column]) == _text(feast[column])
            assert same.all(), column


def test_online_store_serves_the_latest_snapshot(built: Path) -> None:
    latest = materialize_latest(built)
    snapshot = pd.read_parquet(
        built
        / "features"
        / "account"
        / ("as_of=" + latest.strftime("%Y-%m-%dT%H_%M_%S") + ".parquet")
    )
    some = snapshot.sample(5, random_state=3)
    reader = OnlineFeatures(built)
    accounts = pd.read_parquet(built / "accounts.parquet").set_index("account_id")
    rows = [
        {"account_id": str(a), "debtor_id": str(accounts.loc[a, "debtor_id"])}
        for a in some["account_id"]
    ]
    values = reader.get(rows)
    np.testing.assert_allclose(values["current_balance"], some["current_balance"])
    assert values["product"] == list(some["product"])
    debtors = pd.read_parquet(
        built
        / "features"
        / "debtor"
        / ("as_of=" + latest.strftime("%Y-%m-%dT%H_%M_%S") + ".parquet")
    ).set_index("debtor_id")
    expected = [debtors.loc[row["debtor_id"], "debtor_accounts_placed"] for row in rows]
    assert values["debtor_accounts_placed"] == expected
    compliance = OnlineFeatures(built, "compliance_v1").get(rows)
    online = pd.to_datetime(pd.Series(compliance["last_telephone_conversation_at"]), utc=True)
    offline = some["last_telephone_conversation_at"].reset_index(drop=True)
    assert (online.isna() == offline.isna()).all()
    same = online.dt.as_unit("us").dropna() == offline.dt.as_unit("us").dropna()
    assert same.all()
    unknown = reader.get([{"account_id": "1000000000", "debtor_id": "1000000000"}])
    assert unknown["current_balance"] == [None]


def test_unknown_service_is_a_clear_error(built: Path) -> None:
    with pytest.raises(
        FeatureStoreError, match=r"unknown feature service 'scoring_v9'.*debtor_scoring_v1"
    ):
        training_set(built, _labels(built), service="scoring_v9")


def test_dates_outside_the_data_are_refused(built: Path) -> None:
    with pytest.raises(FeatureBuildError, match="outside the data"):
        build_snapshots(built, pd.Timestamp("2030-01-01", tz="UTC"), None)
    with pytest.raises(FeatureBuildError, match="outside the data"):
        build_snapshots(built, pd.Timestamp("2001-01-01", tz="UTC"), None)


def test_an_invalid_portfolio_stops_the_build(built: Path, tmp_path: Path) -> None:
    bad = tmp_path / "bad"
    bad.mkdir()
    for file in [*built.glob("*.parquet"), built / "manifest.json"]:
        (bad / file.name).write_bytes(file.read_bytes())
    payments = pd.read_parquet(bad / "payments.parquet")
    payments.loc[0, "amount"] = -1.0
    write_tables(bad, {"payments": payments})
    with pytest.raises(FeatureBuildError, match=r"quarantined rows.*--accept-quarantine"):
        build_snapshots(bad, None, None)
    assert not (bad / "features").exists()
    summary = build_snapshots(bad, None, None, every="30D", accept_quarantine=True)
    assert summary.quarantined_rows == 1 and summary.account_rows > 0


def test_every_snapshot_file_has_the_same_schema(built: Path) -> None:
    import pyarrow.parquet as pq

    for entity in ("account", "debtor"):
        files = sorted((built / "features" / entity).glob("*.parquet"))
        schemas = {str(pq.read_schema(file).remove_metadata()) for file in files}
        assert len(files) > 3 and len(schemas) == 1, entity


def test_fast_online_reads_equal_feast_reads(built: Path) -> None:
    materialize_latest(built)
    reader = OnlineFeatures(built)
    accounts = pd.read_parquet(built / "accounts.parquet").sample(40, random_state=4)
    rows = [
        {"account_id": str(a), "debtor_id": str(d)}
        for a, d in zip(accounts["account_id"], accounts["debtor_id"], strict=True)
    ]
    rows.append({"account_id": "1000000000", "debtor_id": "1000000000"})
    fast, feast = reader.get(rows), reader.get_through_feast(rows)
    assert set(fast) == set(feast)
    for name in feast:
        for ours, theirs in zip(fast[name], feast[name], strict=True):
            if isinstance(theirs, float) and np.isnan(theirs):
                assert ours is None or np.isnan(ours), name
            elif hasattr(theirs, "timestamp"):
                assert _utc(ours) == _utc(theirs), name
            else:
                assert ours == theirs, (name, ours, theirs)
    compliance = OnlineFeatures(built, "compliance_v1")
    assert compliance.get(rows[:3]).keys() == compliance.get_through_feast(rows[:3]).keys()


def _utc(value: object) -> pd.Timestamp:
    stamp = pd.Timestamp(value)
    return stamp.tz_localize("UTC") if stamp.tzinfo is None else stamp.tz_convert("UTC")


def _value_blob(kind: str, value: object) -> bytes:
    from feast.protos.feast.types.Value_pb2 import Value

    return Value(**{kind: value}).SerializeToString() if kind else Value().SerializeToString()


_values = st.one_of(
    st.tuples(st.just("double_val"), st.floats(allow_nan=False)),
    st.tuples(st.just("float_val"), st.floats(width=32, allow_nan=False)),
    st.tuples(st.just("int64_val"), st.integers(-(2**63), 2**63 - 1)),
    st.tuples(st.just("int32_val"), st.integers(-(2**31), 2**31 - 1)),
    st.tuples(st.just("bool_val"), st.booleans()),
    st.tuples(st.just("unix_timestamp_val"), st.integers(-(2**40), 2**62)),
    st.tuples(st.just(""), st.none()),
)


@settings(max_examples=60, deadline=None)
@given(st.lists(_values, min_size=1, max_size=40))
def test_bulk_decoding_equals_protobuf_for_every_numeric_kind(values: list) -> None:
    from feast.protos.feast.types.Value_pb2 import Value

    blobs = [_value_blob(kind, value) for kind, value in values]
    decoded = decode_value_column(blobs)
    assert decoded.dtype == np.float64
    for blob, ours in zip(blobs, decoded, strict=True):
        proto = Value.FromString(blob)
        kind = proto.WhichOneof("val")
        theirs = None if kind is None else float(getattr(proto, kind))
        if kind == "unix_timestamp_val" and abs(proto.unix_timestamp_val) > 10**11:
            theirs = None  # Feast's marker for a missing timestamp
        if theirs is None:
            assert np.isnan(ours)
        else:
            assert ours == theirs


def test_bulk_decoding_keeps_text_and_missing_values() -> None:
    blobs = [_value_blob("string_val", "telecom"), None, _value_blob("double_val", 2.5), b""]
    assert list(decode_value_column(blobs)) == ["telecom", None, 2.5, None]


def test_bulk_online_read_equals_per_account_reads(built: Path) -> None:
    materialize_latest(built)
    accounts = pd.read_parquet(built / "accounts.parquet")
    frames = OnlineSnapshot(built).read(
        {
            "account_id": np.append(accounts["account_id"].to_numpy(object), "1000000000"),
            "debtor_id": accounts["debtor_id"].unique(),
        }
    )
    by_account = frames["account_id"]
    assert "1000000000" not in by_account.index  # unknown ids are absent, not invented
    some = accounts.sample(40, random_state=5)
    rows = [
        {"account_id": str(a), "debtor_id": str(d)}
        for a, d in zip(some["account_id"], some["debtor_id"], strict=True)
    ]
    single = OnlineFeatures(built).get(rows)
    for name in by_account.columns:
        bulk = by_account[name].reindex(some["account_id"]).tolist()
        for ours, theirs in zip(bulk, single[name], strict=True):
            if theirs is None:
                assert ours is None or np.isnan(ours), name
            elif isinstance(theirs, str):
                assert ours == theirs, name
            else:
                assert float(ours) == float(theirs), name
    debtors = frames["debtor_id"]
    for name in debtors.columns:
        bulk = debtors[name].reindex(some["debtor_id"]).tolist()
        for ours, theirs in zip(bulk, single[name], strict=True):
            assert (theirs is None and np.isnan(ours)) or float(ours) == float(theirs), name
