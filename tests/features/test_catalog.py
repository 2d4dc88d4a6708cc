"""The catalog's versions: published scoring services never change, v2 extends v1."""

from __future__ import annotations

from pathlib import Path

import pytest

from features.catalog import (
    ACCOUNT_FEATURES,
    ALL_FEATURES,
    CATEGORICAL_FEATURES,
    LATEST_SCORING_SERVICE,
    MODEL_FEATURES,
    SCORING_SERVICE_V1,
    SCORING_SERVICE_V2,
    SCORING_SERVICE_V3,
    SCORING_SERVICES,
    categorical_features,
    model_features,
    service_features,
)

PUBLISHED_V1 = (
    "product",
    "creditor",
    "original_balance",
    "current_balance",
    "paid_share_of_placed_balance",
    "days_past_due",
    "days_since_placement",
    "days_since_opened",
    "payments_count_7d",
    "payments_sum_7d",
    "payments_count_30d",
    "payments_sum_30d",
    "payments_count_90d",
    "payments_sum_90d",
    "payments_count_180d",
    "payments_sum_180d",
    "payments_count_365d",
    "payments_sum_365d",
    "days_since_last_payment",
    "payments_count_before_placement",
    "payments_sum_trend_90d",
    "promises_made_90d",
    "promises_kept_90d",
    "promises_broken_90d",
    "promises_made_365d",
    "promises_kept_365d",
    "promises_broken_365d",
    "promises_kept_rate_365d",
    "days_since_last_broken_promise",
    "open_promise_amount",
    "call_attempts_7d",
    "call_responses_7d",
    "call_attempts_30d",
    "call_responses_30d",
    "call_attempts_90d",
    "call_responses_90d",
    "call_contact_rate_90d",
    "call_response_rate_90d",
    "sms_attempts_7d",
    "sms_responses_7d",
    "sms_attempts_30d",
    "sms_responses_30d",
    "sms_attempts_90d",
    "sms_responses_90d",
    "sms_contact_rate_90d",
    "sms_response_rate_90d",
    "email_attempts_7d",
    "email_responses_7d",
    "email_attempts_30d",
    "email_responses_30d",
    "email_attempts_90d",
    "email_responses_90d",
    "email_contact_rate_90d",
    "email_response_rate_90d",
    "letter_attempts_7d",
    "letter_responses_7d",
    "letter_attempts_30d",
    "letter_responses_30d",
    "letter_attempts_90d",
    "letter_responses_90d",
    "letter_contact_rate_90d",
    "letter_response_rate_90d",
    "call_attempts_morning_365d",
    "call_response_rate_morning_365d",
    "call_attempts_afternoon_365d",
    "call_response_rate_afternoon_365d",
    "call_attempts_evening_365d",
    "call_response_rate_evening_365d",
    "call_attempts_weekday_365d",
    "call_response_rate_weekday_365d",
    "call_attempts_weekend_365d",
    "call_response_rate_weekend_365d",
    "inbound_contacts_90d",
    "days_since_last_attempt",
    "days_since_last_conversation",
    "disputes_total",
    "days_since_last_dispute",
    "opted_out_call",
    "opted_out_sms",
    "opted_out_email",
    "offers_made_total",
    "discount_offers_made_total",
    "plan_offers_made_total",
    "offers_accepted_total",
    "best_accepted_discount_pct",
    "days_since_last_offer",
    "statement_balance_last",
    "credit_limit_last",
    "utilization_last",
    "statement_days_past_due_last",
    "statement_days_past_due_max_180d",
    "statements_delinquent_180d",
    "statements_paid_in_full_180d",
    "statements_no_use_180d",
    "statement_balance_mean_180d",
    "statement_balance_trend_180d",
    "debtor_accounts_placed",
    "debtor_current_balance",
    "debtor_payments_sum_90d",
    "debtor_payments_count_365d",
    "debtor_promises_broken_365d",
    "debtor_call_attempts_morning_365d",
    "debtor_call_response_rate_morning_365d",
    "debtor_call_attempts_afternoon_365d",
    "debtor_call_response_rate_afternoon_365d",
    "debtor_call_attempts_evening_365d",
    "debtor_call_response_rate_evening_365d",
    "debtor_call_response_rate_weekday_365d",
    "debtor_call_response_rate_weekend_365d",
    "debtor_sms_response_rate_90d",
    "debtor_email_response_rate_90d",
    "debtor_days_since_last_conversation",
)
"""debtor_scoring_v1 as published (account view inputs, then the debtor view)."""
AUDIT_ONLY = {"gender", "age_band", "marital_status", "education", "age", "sex"}


def test_v1_is_unchanged() -> None:
    assert model_features(SCORING_SERVICE_V1) == PUBLISHED_V1
    assert MODEL_FEATURES == PUBLISHED_V1
    assert categorical_features(SCORING_SERVICE_V1) == CATEGORICAL_FEATURES
    assert CATEGORICAL_FEATURES == ("product", "creditor")


def test_v2_is_v1_plus_the_statement_history() -> None:
    v1, v2 = model_features(SCORING_SERVICE_V1), model_features(SCORING_SERVICE_V2)
    assert set(v1) < set(v2) and len(set(v2)) == len(v2)
    added = [name for name in v2 if name not in v1]
    assert added == [s.name for s in ALL_FEATURES if s.since_version == 2]
    assert len(added) == 46
    assert all("statement" in name for name in added)
    assert categorical_features(SCORING_SERVICE_V2) == ("product", "creditor")


def test_v3_is_v2_plus_the_account_events() -> None:
    v2, v3 = model_features(SCORING_SERVICE_V2), model_features(SCORING_SERVICE_V3)
    account_v2 = service_features(SCORING_SERVICE_V2, "account")
    account_v3 = service_features(SCORING_SERVICE_V3, "account")
    assert account_v3[: len(account_v2)] == account_v2  # v2's, in order, then the new ones
    assert account_v3[len(account_v2) :] == (
        "amount_forgiven_total",
        "last_account_event_kind",
        "days_since_last_account_event",
    )
    assert service_features(SCORING_SERVICE_V3, "debtor") == service_features(
        SCORING_SERVICE_V2, "debtor"
    )
    assert len(v3) == len(v2) + 3
    assert categorical_features(SCORING_SERVICE_V3) == (
        "product",
        "creditor",
        "last_account_event_kind",
    )
    # whether and how an account is closed decides if it is scored at all: never an input
    for name in ("account_closed", "closed_kind", "closed_at"):
        assert name in {spec.name for spec in ACCOUNT_FEATURES}
        assert name not in v3
    assert LATEST_SCORING_SERVICE == SCORING_SERVICE_V3
    assert set(SCORING_SERVICES) == {SCORING_SERVICE_V1, SCORING_SERVICE_V2, SCORING_SERVICE_V3}


def test_no_audit_attribute_is_a_model_input() -> None:
    for service in SCORING_SERVICES:
        names = model_features(service)
        assert not any(part in AUDIT_ONLY for name in names for part in name.split("_")), service
        assert "call_attempts_7d_compliance" not in names
        assert "last_telephone_conversation_at" not in names


def test_every_feature_is_described_and_versioned() -> None:
    for spec in ACCOUNT_FEATURES:
        assert spec.description.endswith("."), spec.name
        assert spec.since_version in SCORING_SERVICES.values(), spec.name


def test_unknown_service_is_a_clear_error() -> None:
    with pytest.raises(ValueError, match=r"unknown scoring service 'compliance_v1'.*v1.*v2.*v3"):
        model_features("compliance_v1")


def test_feast_services_publish_the_catalog_lists(tmp_path: Path) -> None:
    from features.repo.definitions import SCORING_SERVICE, feature_repository

    assert SCORING_SERVICE == SCORING_SERVICE_V1
    services = {
        obj.name: obj
        for obj in feature_repository(tmp_path)
        if type(obj).__name__ == "FeatureService"
    }
    assert set(services) == {*SCORING_SERVICES, "compliance_v1"}
    for name in SCORING_SERVICES:
        published = [
            feature.name
            for projection in services[name].feature_view_projections
            for feature in projection.features
        ]
        assert tuple(published) == model_features(name), name
