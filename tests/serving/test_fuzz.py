"""Fuzz the service's OpenAPI schema with schemathesis over a real socket: whatever the
generated requests (valid or not, with the right key), the service never answers 5xx."""

from __future__ import annotations

import os

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from schemathesis.checks import not_a_server_error

from tests.serving.conftest import KEY, Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES_PER_OPERATION = int(os.environ.get("COBRANZA_FUZZ_EXAMPLES", "25"))


def test_no_generated_request_makes_the_service_fail(service: Running) -> None:
    schema = schemathesis.openapi.from_url(f"{service.url}/openapi.json")
    checked = []
    for result in schema.get_all_operations():
        operation = result.ok()

        @given(case=operation.as_strategy())
        @settings(
            max_examples=EXAMPLES_PER_OPERATION,
            deadline=None,
            suppress_health_check=list(HealthCheck),
            database=None,
        )
        def call(case: schemathesis.Case) -> None:
            case.call_and_validate(
                base_url=service.url, headers={"X-API-Key": KEY}, checks=[not_a_server_error]
            )

        call()
        checked.append(operation.label)
    assert {"POST /v1/scores", "POST /v1/worklists", "GET /v1/models"} <= set(checked)
