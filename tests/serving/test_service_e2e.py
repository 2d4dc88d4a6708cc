"""The scoring service end to end over a real socket: uvicorn serving the app, models loaded
from a real MLflow registry by alias, features from the real Feast online store."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pandas as pd
import pytest
from pydantic import SecretStr

from data_contracts.settings import ServingSettings
from pipelines.feature_store import snapshot_times
from tests.serving.conftest import KEY, Api, Running, client, serve

pytestmark = [pytest.mark.integration, pytest.mark.slow]


def latest_accounts(portfolio: Path) -> pd.DataFrame:
    stamp = snapshot_times(portfolio)[-1].strftime("%Y-%m-%dT%H_%M_%S")
    return pd.read_parquet(portfolio / "features" / "account" / f"as_of={stamp}.parquet")


def closed_now(portfolio: Path) -> dict[str, str]:
    """Account id -> the exclusion reason its latest event gives (the simulator closes each
    account at most once: settled or paid in full)."""
    events = pd.read_parquet(portfolio / "account_events.parquet")
    latest = events.sort_values("occurred_at").drop_duplicates("account_id", keep="last")
    return {
        str(row.account_id): f"closed: {row.kind} {row.occurred_at.date().isoformat()}"
        for row in latest.itertuples()
        if row.kind != "reopened"
    }


def open_owing(portfolio: Path) -> pd.DataFrame:
    """Accounts of the latest snapshot that owe and are not closed since."""
    latest = latest_accounts(portfolio)
    return latest[
        (latest["current_balance"] > 0) & ~latest["account_id"].isin(closed_now(portfolio))
    ]


def test_health_is_open_and_everything_else_needs_a_key(service: Running) -> None:
    assert client(service, None).get("/health").json() == {"status": "ok", "detail": {}}
    assert client(service, None).get("/ready").status_code == 401
    wrong = client(service, "wrong-key")
    assert wrong.get("/ready").status_code == 403
    response = wrong.post("/v1/scores", json={"account_ids": ["1"]})
    assert response.status_code == 403 and KEY not in response.text
    ready = client(service).get("/ready")
    assert ready.status_code == 200
    assert ready.json()["detail"]["models"] == {
        "cobranza-propensity": "1",
        "cobranza-next-best-action": "1",
    }


def test_scores_with_reasons_actions_and_unknown_accounts(service: Running) -> None:
    ids = open_owing(service.portfolio)["account_id"].head(5).tolist()
    response = client(service).post("/v1/scores", json={"account_ids": [*ids, "99999999"]})
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["models"]["cobranza-propensity"] == "1"
    items = body["items"]
    assert [item["account_id"] for item in items] == [*ids, "99999999"]
    assert items[-1]["status"] == "unknown_account" and items[-1]["p_payment_30d"] is None
    for item in items[:-1]:
        assert item["status"] == "scored"
        assert 0 <= item["p_payment_30d"] <= 1 and item["expected_amount_30d"] >= 0
        action = item["best_action"]
        assert action["channel"] in {"call", "sms", "email", "letter"}
        assert action["local_window"] in {"08:00-12:00", "12:00-17:00", "17:00-21:00"}
        assert action["offer"] in {"none", "discount", "payment_plan"}
        assert 1 <= len(item["reasons"]) <= 6
        assert all(reason["sentence"] for reason in item["reasons"])


def _payload(service: Running, account_id: str) -> dict[str, object]:
    """An account's full feature payload: its account and debtor rows of the latest
    snapshot, as a caller would send them."""
    stamp = snapshot_times(service.portfolio)[-1].strftime("%Y-%m-%dT%H_%M_%S")
    row = latest_accounts(service.portfolio).set_index("account_id").loc[account_id]
    features = {
        name: (None if pd.isna(value) else value.item() if hasattr(value, "item") else value)
        for name, value in row.items()
        if name != "event_timestamp" and not isinstance(value, pd.Timestamp)
    }
    debtors = pd.read_parquet(service.portfolio / "features" / "debtor" / f"as_of={stamp}.parquet")
    accounts = pd.read_parquet(service.portfolio / "accounts.parquet")
    debtor_id = str(accounts.set_index("account_id").loc[account_id, "debtor_id"])
    for name, value in debtors.set_index("debtor_id").loc[debtor_id].items():
        if name != "event_timestamp":  # the debtor view comes from the store: sent along too
            features[name] = None if pd.isna(value) else float(value)
    return features


def test_closed_accounts_are_returned_with_their_reason_never_scored(service: Running) -> None:
    closed = closed_now(service.portfolio)
    settled = next(k for k, v in closed.items() if v.startswith("closed: settled "))
    paid_off = next(k for k, v in closed.items() if v.startswith("closed: paid_in_full "))
    open_id = str(open_owing(service.portfolio)["account_id"].iloc[0])
    response = client(service).post(
        "/v1/scores", json={"account_ids": [settled, open_id, paid_off]}
    )
    assert response.status_code == 200, response.text
    first, second, third = response.json()["items"]
    for item, account_id in ((first, settled), (third, paid_off)):
        assert item["account_id"] == account_id and item["status"] == "closed"
        assert item["detail"] == closed[account_id]
        assert item["p_payment_30d"] is None and item["best_action"] is None
        assert item["reasons"] == []
    assert second["status"] == "scored" and second["p_payment_30d"] is not None
    explained = client(service).get(f"/v1/accounts/{settled}/explanation")
    assert explained.status_code == 200
    assert explained.json()["status"] == "closed" and explained.json()["detail"] == closed[settled]
    # a worklist asked for these accounts only: the closed ones are excluded, with the reason
    day = pd.Timestamp(json.loads((service.portfolio / "manifest.json").read_text())["data_end"])
    body = (
        client(service)
        .post(
            "/v1/worklists",
            json={
                "date": day.date().isoformat(),
                "capacity": {"call": 5, "sms": 5, "email": 5},
                "account_ids": [settled, open_id, paid_off],
            },
        )
        .json()
    )
    assert body["counts"]["closed"] == 2 and body["counts"]["considered"] == 1
    reasons = {e["account_id"]: e["reason"] for e in body["excluded"]}
    assert reasons.items() >= {settled: closed[settled], paid_off: closed[paid_off]}.items()
    assert {item["account_id"] for item in body["items"]} <= {open_id}


def test_feature_payloads_score_like_the_online_store(service: Running) -> None:
    account_id = str(open_owing(service.portfolio)["account_id"].iloc[0])
    by_id = client(service).post("/v1/scores", json={"account_ids": [account_id]}).json()
    payload = {"accounts": [{"account_id": account_id, "features": _payload(service, account_id)}]}
    by_payload = client(service).post("/v1/scores", json=payload)
    assert by_payload.status_code == 200, by_payload.text
    assert by_payload.json()["items"][0]["p_payment_30d"] == pytest.approx(
        by_id["items"][0]["p_payment_30d"], rel=1e-9
    )


def test_bad_input_gets_4xx_never_500(service: Running) -> None:
    api = client(service)
    too_many = api.post("/v1/scores", json={"account_ids": [str(i) for i in range(1, 1002)]})
    assert too_many.status_code == 413 and "limit is 1000" in too_many.text
    for body in (
        {},
        {"account_ids": []},
        {"account_ids": [7]},  # account numbers are text: a JSON number is refused
        {"account_ids": [""]},
        {"account_ids": [" 7"]},
        {"account_ids": ["x" * 65]},
        {"account_ids": ["1"], "accounts": []},
        {"account_ids": ["1"], "surprise": True},
        {"accounts": [{"account_id": "1"}]},
    ):
        response = api.post("/v1/scores", json=body)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"], body
    garbage = api.post(
        "/v1/scores", content=b"{not json", headers={"Content-Type": "application/json"}
    )
    assert garbage.status_code == 422
    detail = api.post("/v1/scores", json={"account_ids": [7]}).json()["detail"][0]
    assert detail["loc"][-2:] == ["account_ids", 0] and "string" in detail["msg"]


def test_explanation_and_models(service: Running) -> None:
    account_id = str(open_owing(service.portfolio)["account_id"].iloc[0])
    api = client(service)
    explained = api.get(f"/v1/accounts/{account_id}/explanation")
    assert explained.status_code == 200
    assert explained.json()["reasons"][0]["sentence"]
    assert api.get("/v1/accounts/99999999/explanation").status_code == 404
    assert api.get("/v1/accounts/abc/explanation").status_code == 404  # any text is an id
    assert api.get("/v1/accounts/%20abc/explanation").status_code == 422
    models = api.get("/v1/models").json()["models"]
    assert {m["name"] for m in models} == {"cobranza-propensity", "cobranza-next-best-action"}
    assert all(m["alias"] == "champion" and m["feature_service"] for m in models)


def test_a_service_without_models_says_so_and_never_answers_500(
    featured_portfolio: Path, tmp_path: Path
) -> None:
    from serving.app import create_app

    settings = ServingSettings(portfolio=str(featured_portfolio), api_keys=[SecretStr(KEY)])
    app = create_app(settings, tracking_uri=f"sqlite:///{tmp_path / 'empty.db'}")
    url, server, thread = serve(app)
    try:
        api = Api(url)
        ready = api.get("/ready")
        assert ready.status_code == 503
        assert "cobranza-propensity@champion" in " ".join(ready.json()["detail"]["missing"])
        assert api.post("/v1/scores", json={"account_ids": ["1"]}).status_code == 503
        assert api.get("/health").status_code == 200
    finally:
        server.should_exit = True  # type: ignore[attr-defined]
        thread.join(timeout=10)


def test_metrics_count_requests_by_route_and_show_model_versions(service: Running) -> None:
    api = client(service)
    api.get("/v1/accounts/99999999/explanation")  # a 404, counted under its route template
    api.post("/v1/scores", json={"account_ids": ["99999998"]})
    assert client(service, None).get("/metrics").status_code == 401
    response = api.get("/metrics")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/plain")
    text = response.text
    assert (
        'cobranza_requests_total{method="GET",route="/v1/accounts/{account_id}/explanation",'
        'status="404"}' in text
    )
    assert "99999999" not in text  # ids never become labels
    assert 'cobranza_accounts_scored_total{status="unknown_account"}' in text
    assert 'cobranza_model_version{alias="champion",model="cobranza-propensity"} 1.0' in text
    assert 'cobranza_request_seconds_bucket{le="0.01",route="/v1/scores"}' in text


def test_worklist_over_http_respects_capacity_and_explains_exclusions(service: Running) -> None:
    manifest = json.loads((service.portfolio / "manifest.json").read_text())
    day = pd.Timestamp(manifest["data_end"]).date().isoformat()
    capacity = {"call": 30, "sms": 20, "email": 10, "letter": 0}
    response = client(service).post(
        "/v1/worklists", json={"date": day, "capacity": capacity, "limit": 5000}
    )
    assert response.status_code == 200, response.text
    body = response.json()
    items = body["items"]
    assert items and [item["rank"] for item in items] == list(range(1, len(items) + 1))
    for channel, most in capacity.items():
        assert sum(item["channel"] == channel for item in items) <= most
    assert len({item["account_id"] for item in items}) == len(items)  # one contact each
    for item in items:
        start, end = (int(part[:2]) for part in item["local_window"].split("-"))
        assert 8 <= start < end <= 21 and item["timezone"].startswith("America/")
    best = [item["expected_net"] for item in items if item["kind"] == "best_action"]
    assert best == sorted(best, reverse=True)
    closed = closed_now(service.portfolio)
    assert len(closed) > 50  # settled and paid in full in the simulated year
    excluded = {e["account_id"]: e["reason"] for e in body["excluded"]}
    # every closed account is left out and says how and when it closed; the rest are blocked
    assert {k: v for k, v in excluded.items() if v.startswith("closed: ")} == closed
    assert all(v.startswith("blocked: ") for k, v in excluded.items() if k not in closed)
    assert not closed.keys() & {item["account_id"] for item in items}
    counts = body["counts"]
    assert counts["scheduled"] == len(items) and counts["requested"] == 1200
    assert counts["closed"] == len(closed)
    assert counts["considered"] + counts["closed"] + counts["unknown_or_settled"] == 1200
    bad = client(service).post("/v1/worklists", json={"date": "someday", "capacity": {}})
    assert bad.status_code == 422
    negative = client(service).post("/v1/worklists", json={"date": day, "capacity": {"call": -1}})
    assert negative.status_code == 422


class Broken:
    """A "model" that loads but cannot predict: the smoke test must refuse it."""

    def predict_frame(self, rows: pd.DataFrame) -> pd.DataFrame:
        raise RuntimeError("this model is broken")


def wait_for_version(service: Running, expected: str, seconds: float = 120) -> dict[str, str]:
    """The served versions once `expected` serves, or after `seconds`: a swap waits for its
    reasons, prepared by a process that yields the CPU to everything else (a busy CI box)."""
    deadline = time.monotonic() + seconds
    while True:
        versions = {
            m["name"]: m["version"] for m in client(service).get("/v1/models").json()["models"]
        }
        if versions["cobranza-propensity"] == expected or time.monotonic() > deadline:
            return versions
        time.sleep(0.2)


def test_hot_swap_of_the_champion_and_refusal_of_a_broken_model(service: Running) -> None:
    """Runs last in this module: it moves the champion under the running service."""
    import mlflow
    import mlflow.pyfunc

    from pipelines.registry import experiment_id, open_registry, set_alias
    from training.pyfunc import PropensityPyfunc

    store = open_registry(service.tracking_uri)
    swapped_before = _swaps(service, "swapped")  # feature swaps of earlier tests count too
    # a new version (the same artifact registered again) becomes champion: swapped in
    new = mlflow.register_model("models:/cobranza-propensity/1", "cobranza-propensity")
    set_alias(store, "cobranza-propensity", "champion", str(new.version), "hot swap test")
    errors: list[int] = []

    def keep_scoring() -> None:  # requests keep being answered during the swap
        for _ in range(40):
            status = (
                client(service).post("/v1/scores", json={"account_ids": ["1", "2"]}).status_code
            )
            if status != 200:
                errors.append(status)

    scorer = threading.Thread(target=keep_scoring)
    scorer.start()
    assert wait_for_version(service, str(new.version))["cobranza-propensity"] == str(new.version)
    scorer.join()
    assert errors == []
    # a model that cannot predict is refused; the current champion keeps serving
    with mlflow.start_run(experiment_id=experiment_id(store, "serving-broken")):
        info = mlflow.pyfunc.log_model(name="broken", python_model=PropensityPyfunc(Broken()))
    broken = mlflow.register_model(info.model_uri, "cobranza-propensity")
    set_alias(store, "cobranza-propensity", "champion", str(broken.version), "broken on purpose")
    time.sleep(2.0)
    versions = wait_for_version(service, str(broken.version), seconds=1)
    assert versions["cobranza-propensity"] == str(new.version)
    scored = client(service).post("/v1/scores", json={"account_ids": ["1"]})
    assert scored.status_code == 200
    assert _swaps(service, "refused") == 1
    assert _swaps(service, "swapped") == swapped_before + 1


def _swaps(service: Running, outcome: str) -> float:
    """The service's count of watch outcomes of one kind (0 before the first)."""
    metrics = client(service).get("/metrics").text
    prefix = f'cobranza_model_swaps_total{{outcome="{outcome}"}} '
    lines = [line for line in metrics.splitlines() if line.startswith(prefix)]
    return float(lines[0][len(prefix) :]) if lines else 0.0


def test_feature_payloads_are_checked_per_feature(service: Running) -> None:
    """Unknown names, text for a number, no model feature at all: 422 naming each feature."""
    api = client(service)
    bad = {
        "accounts": [
            {"account_id": "1", "features": {"current_balance": "lots"}},
            {"account_id": "2", "features": {}},
            {"account_id": "3", "features": {"current_balance": 120.0, "shoe_size": 42}},
        ]
    }
    response = api.post("/v1/scores", json=bad)
    assert response.status_code == 422, response.text
    problems = {(tuple(p["loc"][2:]), p["type"]) for p in response.json()["detail"]}
    assert problems == {
        ((0, "features", "current_balance"), "number_expected"),
        ((1, "features"), "missing_features"),
        ((2, "features", "shoe_size"), "unknown_feature"),
    }
    good = {"accounts": [{"account_id": "1", "features": {"current_balance": 120.0}}]}
    assert api.post("/v1/scores", json=good).status_code == 200


def test_reason_codes_are_precomputed_for_every_stored_account(service: Running) -> None:
    """The background step works through every account with features, and what it cached is
    what an explanation then returns."""
    api = client(service)
    deadline = time.monotonic() + 120
    while True:
        done, total = api.get("/ready").json()["detail"]["reasons_precomputed"].split("/")
        if (done == total and total != "0") or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    owing = latest_accounts(service.portfolio)
    assert int(total) == len(owing) and done == total
    account_id = str(owing["account_id"].iloc[0])
    first = api.get(f"/v1/accounts/{account_id}/explanation").json()["reasons"]
    fresh = api.post(
        "/v1/scores",
        json={"accounts": [{"account_id": account_id, "features": _payload(service, account_id)}]},
    ).json()["items"][0]["reasons"]
    assert first == fresh  # payloads never use the cache: computed now, same answer


def test_audit_reports_are_served_per_model_version(service: Running, tmp_path: Path) -> None:
    from pipelines.audit import audit_and_store
    from tests.serving.conftest import QUICK
    from training.config import ExperimentConfig

    api = client(service)
    missing = api.get("/v1/models/cobranza-propensity/1/audit")
    assert missing.status_code == 404 and "cobranza audit" in missing.json()["detail"]
    config = ExperimentConfig.model_validate({**QUICK, "audit": {"bootstrap": 50}})
    result, (report, _) = audit_and_store(
        service.portfolio, config, "1", tmp_path, tracking_uri=service.tracking_uri
    )
    served = api.get(f"/v1/models/{result.model}/{result.version}/audit")
    assert served.status_code == 200
    assert served.headers["content-type"].startswith("text/html")
    assert served.text == report.read_text()
    assert client(service, None).get("/v1/models/cobranza-propensity/1/audit").status_code == 401
    assert api.get("/v1/models/cobranza-propensity/999/audit").status_code == 404
    assert api.get("/v1/models/no-such-model/1/audit").status_code == 404
    assert api.get("/v1/models/cobranza-propensity/0/audit").status_code == 422
    assert api.get("/v1/models/..%2F..%2Fetc/1/audit").status_code in {404, 422}
