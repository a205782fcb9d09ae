"""Function CRUD, submission answers, listing filters and keyset pagination, health and the OpenAPI document."""
from __future__ import annotations

import re
import time
from datetime import datetime, timedelta, timezone
from typing import Any

from flask import Flask
from flask.testing import FlaskClient


def test_function_lifecycle(app_client: FlaskClient, fn_name: str) -> None:
    created = app_client.put(f"/v1/functions/{fn_name}", json={"handler": "a.b:c", "timeout_s": 60})
    assert created.status_code == 201
    assert created.get_json()["timeout_s"] == 60 and created.get_json()["max_retries"] == 3
    updated = app_client.put(f"/v1/functions/{fn_name}", json={"handler": "a.b:d", "max_retries": 0})
    assert updated.status_code == 200 and updated.get_json()["handler"] == "a.b:d"
    assert updated.get_json()["timeout_s"] == 300  # PUT replaces the whole config
    names = [f["name"] for f in app_client.get("/v1/functions").get_json()["items"]]
    assert fn_name in names
    assert app_client.delete(f"/v1/functions/{fn_name}").status_code == 204
    assert app_client.get(f"/v1/functions/{fn_name}").status_code == 404


def test_submission_answer_and_generated_id(app_client: FlaskClient, fn_name: str, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    response = app_client.post(f"/v1/functions/{fn_name}/invocations", json={"k": [1, 2]})
    assert response.status_code == 202
    body = response.get_json()
    assert set(body) == {"invocationId", "requestId", "function", "status"}
    assert re.fullmatch(r"[A-Za-z_][A-Za-z0-9_-]{0,127}", body["invocationId"])
    assert body["function"] == fn_name and body["status"] == "Enqueued"
    assert response.headers["Location"] == f"/v1/functions/{fn_name}/invocations/{body['invocationId']}"
    detail = app_client.get(response.headers["Location"]).get_json()
    assert detail["payload"] == {"k": [1, 2]}
    assert detail["transitions"][0]["to"] == "Enqueued"


def test_empty_body_is_a_null_payload(app_client: FlaskClient, fn_name: str, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    response = app_client.post(f"/v1/functions/{fn_name}/invocations")
    assert response.status_code == 202
    assert app_client.get(response.headers["Location"]).get_json()["payload"] is None


def test_listing_filters_and_keyset_pagination(app_client: FlaskClient, fn_name: str, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    before = datetime.now(timezone.utc) - timedelta(seconds=1)
    ids = []
    for n in range(7):
        prefix = "batch_a" if n < 4 else "batch_b"
        answer = app_client.post(f"/v1/functions/{fn_name}/invocations", json={"n": n},
                                 headers={"X-Invocation-Id": f"{prefix}_{n}"}).get_json()
        ids.append(answer["invocationId"])
    seen, cursor = [], None
    while True:
        query = f"/v1/invocations?function={fn_name}&limit=3" + (f"&cursor={cursor}" if cursor else "")
        page = app_client.get(query).get_json()
        seen += [i["invocationId"] for i in page["items"]]
        cursor = page["next_cursor"]
        if not cursor:
            break
    assert seen == list(reversed(ids))  # newest first, nothing lost or repeated across pages
    by_prefix = app_client.get(f"/v1/invocations?function={fn_name}&prefix=batch_b").get_json()["items"]
    assert {i["invocationId"] for i in by_prefix} == set(ids[4:])
    until_text = before.isoformat().replace("+00:00", "Z")
    until = app_client.get(f"/v1/invocations?function={fn_name}&until={until_text}").get_json()["items"]
    assert until == []
    since_ms = int(before.timestamp() * 1000)
    assert len(app_client.get(f"/v1/invocations?function={fn_name}&since={since_ms}").get_json()["items"]) == 7
    # Several statuses at once, comma-separated or repeated.
    many = app_client.get(f"/v1/invocations?function={fn_name}&status=Enqueued,Running,Succeeded&status=Failed")
    assert many.status_code == 200


def test_prefix_is_literal_not_a_pattern(app_client: FlaskClient, fn_name: str, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    for iid in ("a_1", "ab1"):
        app_client.post(f"/v1/functions/{fn_name}/invocations", json={}, headers={"X-Invocation-Id": iid})
    items = app_client.get(f"/v1/invocations?function={fn_name}&prefix=a_").get_json()["items"]
    assert [i["invocationId"] for i in items] == ["a_1"]


def test_healthz(app_client: FlaskClient) -> None:
    response = app_client.get("/healthz")
    assert response.status_code == 200
    assert response.get_json()["database"] == "ok"


def test_openapi_describes_every_route(app_client: FlaskClient) -> None:
    doc = app_client.get("/openapi.json").get_json()
    assert doc["openapi"].startswith("3.")
    app: Flask = app_client.application
    for rule in app.url_map.iter_rules():
        if rule.endpoint == "static" or rule.endpoint.startswith("console."):
            continue  # the console's HTML pages are not part of the REST API
        path = re.sub(r"<(?:\w+:)?(\w+)>", r"{\1}", rule.rule)
        assert path in doc["paths"], f"{path} is served but not in the OpenAPI document"
        for method in rule.methods - {"HEAD", "OPTIONS"}:
            assert method.lower() in doc["paths"][path], f"{method} {path} missing from the OpenAPI document"
    submit = doc["paths"]["/v1/functions/{name}/invocations"]["post"]
    assert {"202", "400", "404", "409", "413", "415"} <= set(submit["responses"])
    assert time.time()  # the document is built per request from the live config


def test_the_prefix_filter_is_case_sensitive_on_both_backends(app_client: FlaskClient, fn_name: str,
                                                              deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    for iid in ("Case_upper", "case_lower", "caseXnot_an_underscore"):
        answer = app_client.post(f"/v1/functions/{fn_name}/invocations", json={}, headers={"X-Invocation-Id": iid})
        assert answer.status_code == 202
    found = app_client.get(f"/v1/invocations?function={fn_name}&prefix=case_").get_json()["items"]
    assert [i["invocationId"] for i in found] == ["case_lower"]  # not Case_upper, and '_' is not a wildcard
