"""Declarations of cobranza's Feast feature repository.

Entities `account` and `debtor`; file sources over the snapshot parquet written by
`cobranza features build` (`<portfolio>/features/account/`, `.../debtor/`); one feature view per
entity with a description on every field; versioned feature services. A change to the features
a model uses is a new service version (`debtor_scoring_v2`), never an edit of a published one:
`features.catalog` records the version that introduced each feature.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from feast import Entity, FeatureService, FeatureView, Field, FileSource, ValueType
from feast.data_format import ParquetFormat
from feast.types import Float64, Int64, String, UnixTimestamp

from features.catalog import (
    ACCOUNT_FEATURES,
    DEBTOR_FEATURES,
    SCORING_SERVICE_V1,
    SCORING_SERVICE_V2,
    SCORING_SERVICE_V3,
    SCORING_SERVICES,
    FeatureSpec,
    service_features,
)
from features.snapshot import ENTITY_TIMESTAMP

SNAPSHOT_TTL = timedelta(days=35)
"""A snapshot serves for 35 days: weekly snapshots leave room for a missed month-end run."""
SCORING_SERVICE = SCORING_SERVICE_V1
"""The first published scoring service (kept for existing callers; see SCORING_SERVICES)."""
SCORING_DESCRIPTIONS = {
    SCORING_SERVICE_V1: "Inputs of the propensity and next-best-action models, version 1.",
    SCORING_SERVICE_V2: (
        "Inputs of the propensity and next-best-action models, version 2: version 1 plus the "
        "month-by-month statement history (latest 6 statements, payments per cycle)."
    ),
    SCORING_SERVICE_V3: (
        "Inputs of the propensity and next-best-action models, version 3: version 2 plus the "
        "account's events (balance forgiven by settlements, kind and age of the latest event)."
    ),
}
COMPLIANCE_SERVICE = "compliance_v1"
COMPLIANCE_FEATURES = (
    "call_attempts_7d_compliance",
    "last_telephone_conversation_at",
    "opted_out_call",
    "opted_out_sms",
    "opted_out_email",
    "disputes_total",
    "days_since_last_dispute",
    "open_promise_amount",
)
_FEAST_TYPES = {"float": Float64, "int": Int64, "string": String, "timestamp": UnixTimestamp}


def _fields(specs: tuple[FeatureSpec, ...]) -> list[Field]:
    return [
        Field(name=spec.name, dtype=_FEAST_TYPES[spec.kind], description=spec.description)
        for spec in specs
    ]


def feature_repository(snapshot_root: Path) -> list[object]:
    """Every Feast object of the repository, reading snapshots under `snapshot_root`."""
    account = Entity(
        name="account",
        join_keys=["account_id"],
        value_type=ValueType.STRING,
        description="A debt placed with the collection operation.",
    )
    debtor = Entity(
        name="debtor",
        join_keys=["debtor_id"],
        value_type=ValueType.STRING,
        description="A person who owes on one or more accounts.",
    )
    account_source = FileSource(
        name="account_snapshots",
        path=str(Path(snapshot_root) / "account"),
        file_format=ParquetFormat(),
        timestamp_field=ENTITY_TIMESTAMP,
        description="Point-in-time account snapshots, one parquet file per as-of time.",
    )
    debtor_source = FileSource(
        name="debtor_snapshots",
        path=str(Path(snapshot_root) / "debtor"),
        file_format=ParquetFormat(),
        timestamp_field=ENTITY_TIMESTAMP,
        description="Point-in-time debtor snapshots, one parquet file per as-of time.",
    )
    account_view = FeatureView(
        name="account_features",
        entities=[account],
        ttl=SNAPSHOT_TTL,
        schema=_fields(ACCOUNT_FEATURES),
        source=account_source,
        online=True,
        description=(
            "Payment, promise, contact, offer, statement and event history of an account, "
            "and whether it is closed."
        ),
    )
    debtor_view = FeatureView(
        name="debtor_features",
        entities=[debtor],
        ttl=SNAPSHOT_TTL,
        schema=_fields(DEBTOR_FEATURES),
        source=debtor_source,
        online=True,
        description="History of a debtor over all their accounts: when they answer, what they pay.",
    )
    scoring = [
        FeatureService(
            name=name,
            features=[
                account_view[list(service_features(name, "account"))],
                debtor_view[list(service_features(name, "debtor"))],
            ],
            description=SCORING_DESCRIPTIONS[name],
        )
        for name in SCORING_SERVICES
    ]
    compliance = FeatureService(
        name=COMPLIANCE_SERVICE,
        features=[account_view[list(COMPLIANCE_FEATURES)]],
        description="Counters the worklist needs to respect contact rules, version 1.",
    )
    return [
        account,
        debtor,
        account_source,
        debtor_source,
        account_view,
        debtor_view,
        *scoring,
        compliance,
    ]
