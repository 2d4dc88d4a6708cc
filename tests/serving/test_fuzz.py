"""Fuzz the service's OpenAPI schema with schemathesis over a real socket: whatever the
generated requests (valid or not, with the right key), the service never answers 5xx."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis.checks import not_a_server_error

from tests.serving.conftest import KEY, Running

pytestmark = [pytest.mark.integration, pytest.mark.slow]
EXAMPLES_PER_OPERATION = int(os.environ.get("COBRANZA_FUZZ_EXAMPLES", "25"))
NON_FINITE = ("NaN", "Infinity", "-Infinity", "1e400", "-1e400")
"""Numbers JSON has no place for, as Python's json writes them (and 1e400, read as infinity).
schemathesis only generates finite numbers, and sends a body through `requests`, which refuses
to write NaN: so a hook puts them into the body's JSON text."""
_SLOT = "__cobranza_non_finite__"


def _leaves(value: Any, path: tuple[Any, ...] = ()) -> Iterator[tuple[tuple[Any, ...], Any]]:
    if isinstance(value, dict):
        for key, inner in value.items():
            yield from _leaves(inner, (*path, key))
    elif isinstance(value, list):
        for position, inner in enumerate(value):
            yield from _leaves(inner, (*path, position))
    else:
        yield path, value


def _replaced(value: Any, path: tuple[Any, ...], new: Any) -> Any:
    if not path:
        return new
    copy: Any = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replaced(value[path[0]], path[1:], new)
    return copy


def with_non_finite(body: Any, counter: list[int]) -> st.SearchStrategy[Any]:
    """The generated body as it is, or as JSON text with one of its numbers (or, without
    numbers, one of its values) replaced by a non-finite number."""
    leaves = list(_leaves(body))
    numbers = [p for p, v in leaves if isinstance(v, int | float) and not isinstance(v, bool)]
    paths = numbers or [path for path, _ in leaves]
    if not paths:
        return st.just(body)

    def written(pick: tuple[tuple[Any, ...], str]) -> bytes:
        counter[0] += 1
        text = json.dumps(_replaced(body, pick[0], _SLOT))
        return text.replace(json.dumps(_SLOT), pick[1]).encode()

    return st.one_of(
        st.just(body), st.tuples(st.sampled_from(paths), st.sampled_from(NON_FINITE)).map(written)
    )


def test_no_generated_request_makes_the_service_fail(service: Running) -> None:
    schema = schemathesis.openapi.from_url(
        f"{service.url}/openapi.json", headers={"X-API-Key": KEY}
    )
    non_finite_sent = [0]

    @schema.hook("flatmap_body")
    def non_finite_numbers(context: Any, body: Any) -> st.SearchStrategy[Any]:
        return with_non_finite(body, non_finite_sent)

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
    assert non_finite_sent[0] > 0  # the hook did put NaN and infinities into bodies
