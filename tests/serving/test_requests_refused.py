"""Requests the service must refuse cleanly, over a real socket: non-finite numbers, loose
types, bodies without a key or over the size limit, closed documentation. Every refusal is a
4xx that names the field and echoes at most a short excerpt of the input, never a key."""

from __future__ import annotations

import http.client
import json
import logging
import socket
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
from pydantic import SecretStr

from data_contracts.settings import ServingSettings
from tests.serving.conftest import KEY, REPO, Api, Running, client, serve
from tests.serving.test_service_e2e import _payload, latest_accounts

pytestmark = [pytest.mark.integration, pytest.mark.slow]
NON_FINITE = ["NaN", "Infinity", "-Infinity", "1e400", "-1e400"]
DAY = '"2026-01-05"'


def strict_json(text: str) -> object:
    """Parse as JSON proper: NaN or Infinity in an answer fail the test."""

    def refuse(constant: str) -> object:
        raise AssertionError(f"the answer holds {constant}")

    return json.loads(text, parse_constant=refuse)


@pytest.fixture
def server_log() -> Iterator[list[logging.LogRecord]]:
    """What the in-process service logs (uvicorn's error log, where tracebacks go)."""
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("uvicorn.error")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


# ---- 7: NaN, Infinity and 1e400 -----------------------------------------------------------

NON_FINITE_BODIES = [
    ("/v1/scores", '{"account_ids": [%s]}', ["body", "account_ids", 0]),
    ("/v1/scores", '{"account_ids": ["1"], "reasons": %s}', ["body", "reasons"]),
    (
        "/v1/scores",
        '{"accounts": [{"account_id": %s, "features": {"current_balance": 1.0}}]}',
        ["body", "accounts", 0, "account_id"],
    ),
    (
        "/v1/scores",
        '{"accounts": [{"account_id": "1", "features": {"current_balance": %s}}]}',
        ["body", "accounts", 0, "features", "current_balance"],
    ),
    (
        "/v1/worklists",
        '{"date": ' + DAY + ', "capacity": {"call": %s}}',
        ["body", "capacity", "call"],
    ),
    ("/v1/worklists", '{"date": ' + DAY + ', "capacity": {}, "limit": %s}', ["body", "limit"]),
    (
        "/v1/worklists",
        '{"date": ' + DAY + ', "capacity": {}, "account_ids": [%s]}',
        ["body", "account_ids", 0],
    ),
    ("/v1/worklists", '{"date": %s, "capacity": {}}', ["body", "date"]),
]


@pytest.mark.parametrize("number", NON_FINITE)
@pytest.mark.parametrize(("path", "template", "loc"), NON_FINITE_BODIES)
def test_non_finite_numbers_get_422_naming_the_field(
    service: Running,
    server_log: list[logging.LogRecord],
    number: str,
    path: str,
    template: str,
    loc: list[object],
) -> None:
    """The raw JSON text `NaN` (what Python's json writes), `Infinity`, and 1e400 (read as
    infinity): 422 naming the field, a valid JSON answer, nothing logged."""
    body = (template % number).encode()
    response = client(service).post(
        path, content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 422, response.text
    detail = strict_json(response.text)["detail"]  # type: ignore[index]
    assert loc in [error["loc"] for error in detail], detail
    assert not [r for r in server_log if r.levelno >= logging.WARNING], server_log


# ---- 10: strict ids, versions, counts and flags -------------------------------------------

LOOSE_BODIES = [
    ("/v1/scores", {"account_ids": [True]}, ["body", "account_ids", 0]),
    ("/v1/scores", {"account_ids": [1]}, ["body", "account_ids", 0]),
    ("/v1/scores", {"account_ids": [1.0]}, ["body", "account_ids", 0]),
    ("/v1/scores", {"account_ids": ["1"], "reasons": "yes"}, ["body", "reasons"]),
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
        {"date": "2026-01-05", "capacity": {}, "account_ids": [7]},
        ["body", "account_ids", 0],
    ),
]


@pytest.mark.parametrize(("path", "body", "loc"), LOOSE_BODIES)
def test_ids_counts_and_flags_are_read_strictly(
    service: Running, path: str, body: dict[str, object], loc: list[object]
) -> None:
    """`true`, `1` and `1.0` are not account `"1"`: account numbers are text."""
    response = client(service).post(path, json=body)
    assert response.status_code == 422, response.text
    assert loc in [error["loc"] for error in response.json()["detail"]]


@pytest.mark.parametrize("written", ["1.0", "+1", "01", "1_0", "%201"])
def test_versions_in_paths_are_plain_digits(service: Running, written: str) -> None:
    audit = client(service).get(f"/v1/models/cobranza-propensity/{written}/audit")
    assert audit.status_code == 422, audit.text
    assert audit.json()["detail"][0]["loc"] == ["path", "version"]


@pytest.mark.parametrize("written", ["%201", "1%20", "1%09", "x" * 65])
def test_account_ids_in_paths_follow_the_contract(service: Running, written: str) -> None:
    """Spaces around, control characters or more than 64 characters: no account id."""
    account = client(service).get(f"/v1/accounts/{written}/explanation")
    assert account.status_code == 422, account.text
    assert account.json()["detail"][0]["loc"] == ["path", "account_id"]


def test_account_ids_in_paths_are_compared_as_text(service: Running) -> None:
    """`01` is not account `1`: each is looked up as written."""
    api = client(service)
    assert api.get("/v1/accounts/1/explanation").status_code == 200
    padded = api.get("/v1/accounts/01/explanation")
    assert padded.status_code == 404


# ---- 8a: errors echo a short excerpt, never a key -----------------------------------------


def test_errors_echo_a_short_excerpt_and_never_a_key(service: Running) -> None:
    api = client(service)
    text = api.post("/v1/scores", content=b"x" * 5_000_000, headers={"Content-Type": "text/plain"})
    assert text.status_code == 422
    assert len(text.content) < 2_000
    assert all(len(str(error.get("input", ""))) <= 103 for error in text.json()["detail"])
    long_list = api.post("/v1/scores", json={"account_ids": ["1"] * 1000, "accounts": []})
    assert long_list.status_code == 422 and len(long_list.content) < 2_000
    for body in (
        {"account_ids": [KEY], "reasons": "no"},  # a key as an id, in a refused body
        {"account_ids": ["x" * 95 + KEY]},  # a key across the excerpt's end: no prefix shown
        {"account_ids": ["1"], KEY: 1},  # a key as a field name
        {"accounts": [{"account_id": "1", "features": {"current_balance": "a" * 30 + KEY}}]},
        {"accounts": [{"account_id": "1", "features": {KEY: 1.0}}]},
    ):
        response = api.post("/v1/scores", json=body)
        assert response.status_code == 422, response.text
        assert KEY[:8] not in response.text, response.text


# ---- 8: the key before the body, and a body limit -----------------------------------------


def body_limit() -> int:
    """The default body limit."""
    return int(ServingSettings().max_body_bytes)


def exchange(url: str, head: bytes, body: bytes = b"", timeout: float = 10) -> tuple[int, bytes]:
    """Send `head` and `body` as they are on a new connection; the answer's status and body.
    Fails (socket timeout) if the service does not answer within `timeout`."""
    where = urlsplit(url)
    with socket.create_connection((where.hostname, where.port), timeout=timeout) as sock:
        sock.sendall(head + body)
        response = http.client.HTTPResponse(sock)
        try:
            response.begin()
            return response.status, response.read()
        finally:
            response.close()


def post_head(path: str, headers: dict[str, str]) -> bytes:
    lines = [f"POST {path} HTTP/1.1", "Host: test", "Content-Type: application/json"]
    lines += [f"{name}: {value}" for name, value in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


@pytest.mark.parametrize(("key", "status"), [(None, 401), ("wrong-key", 403)])
def test_the_key_is_checked_before_the_body_is_read(
    service: Running, key: str | None, status: int
) -> None:
    """A 93 MB body announced without a key is answered at once, its first KB unread."""
    headers = {"Content-Length": "93000000", **({"X-API-Key": key} if key else {})}
    started = time.monotonic()
    answer = exchange(service.url, post_head("/v1/scores", headers), b"[" * 1024, timeout=5)
    assert answer[0] == status and time.monotonic() - started < 5
    truncated = Api(service.url, key).post(
        "/v1/scores", content=b'{"account_ids": [1,', headers={"Content-Type": "application/json"}
    )
    assert truncated.status_code == status, truncated.text


def test_a_body_over_the_limit_gets_413_without_being_read(service: Running) -> None:
    announced = post_head("/v1/scores", {"Content-Length": "93000000", "X-API-Key": KEY})
    status, body = exchange(service.url, announced, b"[" * 1024, timeout=5)
    assert status == 413 and b"limit" in body
    # chunked: no length announced; refused once the bytes streamed pass the limit
    chunked = post_head("/v1/scores", {"Transfer-Encoding": "chunked", "X-API-Key": KEY})
    chunk = b"%x\r\n%s\r\n" % (65536, b" " * 65536)
    chunks = chunk * (body_limit() // 65536 + 1)  # past the limit, never the last chunk
    status, body = exchange(service.url, chunked, chunks, timeout=10)
    assert status == 413


def test_a_thousand_full_feature_payloads_fit_the_limit(service: Running) -> None:
    """The default limit is sized for the largest request a client sends."""
    owing = latest_accounts(service.portfolio)
    account_id = str(owing["account_id"].iloc[0])
    features = _payload(service, account_id)
    accounts = [{"account_id": f"ACC-{n:012d}", "features": features} for n in range(1000)]
    body = json.dumps({"accounts": accounts, "reasons": False}, indent=2).encode()
    assert len(body) < body_limit()
    response = client(service).post(
        "/v1/scores", content=body, headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 200, response.text[:300]
    assert len(response.json()["items"]) == 1000


# ---- 11: documentation closed unless opened -----------------------------------------------

DOCS = ["/docs", "/redoc", "/openapi.json", "/docs/oauth2-redirect"]


def test_documentation_needs_the_key_by_default(service: Running) -> None:
    for path in DOCS:
        assert client(service, None).get(path).status_code == 401, path
        assert client(service, "wrong-key").get(path).status_code == 403, path
        assert client(service).get(path).status_code == 200, path
    assert client(service, None).get("/nowhere").status_code == 401  # no probing without a key


def test_documentation_can_be_opened(service: Running) -> None:
    from serving.app import create_app

    settings = ServingSettings(
        portfolio=str(service.portfolio),
        api_keys=[SecretStr(KEY)],
        contact_rules=str(REPO / "data_contracts" / "contact_rules.yaml"),
        watch_seconds=0,
        precompute_reasons=False,
        open_docs=True,
    )
    url, server, thread = serve(create_app(settings, tracking_uri=service.tracking_uri))
    try:
        anyone = Api(url, None)
        for path in DOCS:
            assert anyone.get(path).status_code == 200, path
        assert anyone.get("/v1/models").status_code == 401
        assert anyone.get("/ready").status_code == 401
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)
