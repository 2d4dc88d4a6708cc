"""Requests the service must refuse cleanly, over a real socket: non-finite numbers, loose
types, bodies without a key or over the size limit, closed documentation. Every refusal is a
4xx that names the field and echoes at most a short excerpt of the input, never a key."""

from __future__ import annotations

import pytest

from tests.serving.conftest import Running, client

pytestmark = [pytest.mark.integration, pytest.mark.slow]


# ---- 10: strict ids, versions, counts and flags -------------------------------------------

LOOSE_BODIES = [
    ("/v1/scores", {"account_ids": [True]}, ["body", "account_ids", 0]),
    ("/v1/scores", {"account_ids": ["1"]}, ["body", "account_ids", 0]),
    ("/v1/scores", {"account_ids": [1.0]}, ["body", "account_ids", 0]),
    ("/v1/scores", {"account_ids": [1], "reasons": "yes"}, ["body", "reasons"]),
    (
        "/v1/scores",
        {"accounts": [{"account_id": True, "features": {"current_balance": 1.0}}]},
        ["body", "accounts", 0, "account_id"],
    ),
    (
        "/v1/worklists",
        {"date": "2026-01-05", "capacity": {"call": True}},
        ["body", "capacity", "call"],
    ),
    ("/v1/worklists", {"date": "2026-01-05", "capacity": {}, "limit": "5"}, ["body", "limit"]),
    (
        "/v1/worklists",
        {"date": "2026-01-05", "capacity": {}, "account_ids": ["7"]},
        ["body", "account_ids", 0],
    ),
]


@pytest.mark.parametrize(("path", "body", "loc"), LOOSE_BODIES)
def test_ids_counts_and_flags_are_read_strictly(
    service: Running, path: str, body: dict[str, object], loc: list[object]
) -> None:
    """`true`, `"1"` and `1.0` are not account 1."""
    response = client(service).post(path, json=body)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("written", ["1.0", "+1", "01", "1_0", "%201"])
def test_ids_and_versions_in_paths_are_plain_digits(service: Running, written: str) -> None:
    api = client(service)
    account = api.get(f"/v1/accounts/{written}/explanation")
    assert account.status_code == 422, account.text
    assert account.json()["detail"][0]["loc"] == ["path", "account_id"]
    audit = api.get(f"/v1/models/cobranza-propensity/{written}/audit")
    assert audit.status_code == 422, audit.text
    assert audit.json()["detail"][0]["loc"] == ["path", "version"]
    assert api.get("/v1/accounts/1/explanation").status_code in {200, 404}
