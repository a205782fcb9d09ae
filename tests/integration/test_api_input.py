"""Bad input at the REST entry points: a clear error, and nothing written to the ledger. Runs on both backends."""
from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from taskservice.ledger.models import FunctionRow, InvocationRow, TransitionRow
from taskservice.services import Services


def ledger_counts(services: Services) -> tuple[int, int, int]:
    """Functions, invocations and submissions recorded. Status changes of invocations other tests left running are
    left out on purpose: only a submission writes an Enqueued transition."""
    transitions = TransitionRow.__table__
    with services.engine.connect() as conn:
        return (conn.execute(select(func.count()).select_from(FunctionRow.__table__)).scalar_one(),
                conn.execute(select(func.count()).select_from(InvocationRow.__table__)).scalar_one(),
                conn.execute(select(func.count()).select_from(transitions)
                             .where(transitions.c.to_status == "Enqueued")).scalar_one())


def error_of(response: Any) -> dict[str, str]:
    body = response.get_json()
    assert set(body["error"]) >= {"code", "message"}, body
    assert body["error"]["message"]
    return body["error"]


@pytest.fixture
def noop(app_client: FlaskClient, fn_name: str, deploy: Any) -> str:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    return fn_name


SUBMIT_CASES = [
    # (description, path suffix, kwargs, expected status, expected code)
    ("malformed JSON", "", {"data": b'{"a": ', "content_type": "application/json"}, 400, "MalformedJSON"),
    ("NaN is not JSON", "", {"data": b'{"a": NaN}', "content_type": "application/json"}, 400, "MalformedJSON"),
    ("not JSON content type", "", {"data": b"a=1", "content_type": "application/x-www-form-urlencoded"}, 415,
     "UnsupportedMediaType"),
    ("text/plain", "", {"data": b'{"a": 1}', "content_type": "text/plain"}, 415, "UnsupportedMediaType"),
    ("payload over the limit", "", {"data": json.dumps({"x": "y" * (128 * 1024)}).encode(),
                                    "content_type": "application/json"}, 413, "PayloadTooLarge"),
    ("invalid invocation id", "", {"json": {}, "headers": {"X-Invocation-Id": "1-starts-with-digit"}}, 400,
     "InvalidInvocationId"),
    ("invocation id too long", "", {"json": {}, "headers": {"X-Invocation-Id": "a" * 129}}, 400,
     "InvalidInvocationId"),
    ("invocation id with a slash", "", {"json": {}, "headers": {"X-Invocation-Id": "a/b"}}, 400,
     "InvalidInvocationId"),
]


@pytest.mark.parametrize("what,suffix,kwargs,status,code", SUBMIT_CASES, ids=[c[0] for c in SUBMIT_CASES])
def test_bad_submissions_are_refused_and_change_nothing(app_client: FlaskClient, services: Services, noop: str,
                                                        what: str, suffix: str, kwargs: dict[str, Any], status: int,
                                                        code: str) -> None:
    before = ledger_counts(services)
    response = app_client.post(f"/v1/functions/{noop}/invocations{suffix}", **kwargs)
    assert response.status_code == status, response.get_json()
    assert error_of(response)["code"] == code
    assert ledger_counts(services) == before


def test_unknown_function_is_404_and_changes_nothing(app_client: FlaskClient, services: Services) -> None:
    before = ledger_counts(services)
    response = app_client.post("/v1/functions/no_such_fn/invocations", json={"a": 1})
    assert response.status_code == 404
    assert error_of(response)["code"] == "FunctionNotFound"
    assert ledger_counts(services) == before


def test_invalid_function_name_is_400(app_client: FlaskClient, services: Services) -> None:
    before = ledger_counts(services)
    for method, path in [("post", "/v1/functions/9bad/invocations"), ("put", "/v1/functions/bad.name"),
                         ("get", "/v1/functions/" + "a" * 65)]:
        response = getattr(app_client, method)(path, json={"handler": "a.b:c"})
        assert response.status_code == 400, (path, response.get_json())
        assert error_of(response)["code"] == "InvalidName"
    assert ledger_counts(services) == before


def test_duplicate_id_is_409_with_the_existing_invocation(app_client: FlaskClient, services: Services,
                                                          noop: str) -> None:
    first = app_client.post(f"/v1/functions/{noop}/invocations", json={"n": 1}, headers={"X-Invocation-Id": "dup"})
    assert first.status_code == 202
    before = ledger_counts(services)
    second = app_client.post(f"/v1/functions/{noop}/invocations", json={"n": 2}, headers={"X-Invocation-Id": "dup"})
    assert second.status_code == 409
    body = second.get_json()
    assert body["error"]["code"] == "InvocationAlreadyExist"
    assert body["invocation"]["invocationId"] == "dup"
    assert body["invocation"]["requestId"] == first.get_json()["requestId"]
    assert body["invocation"]["payload"] == {"n": 1}
    assert ledger_counts(services) == before


CONFIG_CASES = [
    ({"handler": "pkg.mod:fn", "timeout_s": 0}, 422, "timeout_s"),
    ({"handler": "pkg.mod:fn", "max_retries": 9}, 422, "max_retries"),
    ({"handler": "pkg_without_colon"}, 422, "handler"),
    ({"handler": "pkg.mod:fn", "on_success": "smtp:me"}, 422, "on_success"),
    ({"timeout_s": 10}, 422, "handler"),
]


@pytest.mark.parametrize("config,status,field", CONFIG_CASES, ids=[c[2] for c in CONFIG_CASES])
def test_invalid_function_config_is_422_and_changes_nothing(app_client: FlaskClient, services: Services,
                                                            fn_name: str, config: dict[str, Any], status: int,
                                                            field: str) -> None:
    before = ledger_counts(services)
    response = app_client.put(f"/v1/functions/{fn_name}", json=config)
    assert response.status_code == status
    error = error_of(response)
    assert error["code"] == "InvalidFunctionConfig" and field in error["message"]
    assert ledger_counts(services) == before


def test_function_config_must_be_json(app_client: FlaskClient, services: Services, fn_name: str) -> None:
    before = ledger_counts(services)
    assert app_client.put(f"/v1/functions/{fn_name}", data=b"handler=a.b:c",
                          content_type="application/x-www-form-urlencoded").status_code == 415
    assert app_client.put(f"/v1/functions/{fn_name}", data=b"{", content_type="application/json").status_code == 400
    assert app_client.put(f"/v1/functions/{fn_name}", data=b"", content_type="application/json").status_code == 400
    assert ledger_counts(services) == before


def test_updating_an_existing_function_with_bad_config_keeps_the_old_one(app_client: FlaskClient, noop: str) -> None:
    assert app_client.put(f"/v1/functions/{noop}", json={"handler": "x.y:z", "max_retries": 20}).status_code == 422
    assert app_client.get(f"/v1/functions/{noop}").get_json()["handler"] == "workers.handlers.noop:handler"


@pytest.mark.parametrize("query,code", [
    ("status=Done", "InvalidQuery"), ("limit=0", "InvalidQuery"), ("limit=abc", "InvalidQuery"),
    ("limit=1001", "InvalidQuery"), ("since=yesterday", "InvalidQuery"), ("cursor=%%%", "InvalidQuery"),
    ("cursor=Zm9vOmJhcg", "InvalidQuery"), ("function=9x", "InvalidName"), ("prefix=" + "a" * 129, "InvalidQuery"),
])
def test_bad_list_queries_are_400(app_client: FlaskClient, query: str, code: str) -> None:
    response = app_client.get(f"/v1/invocations?{query}")
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_reads_of_unknown_things_are_404(app_client: FlaskClient, noop: str) -> None:
    assert error_of(app_client.get("/v1/functions/nope_fn"))["code"] == "FunctionNotFound"
    assert error_of(app_client.get(f"/v1/functions/{noop}/invocations/nope"))["code"] == "InvocationNotFound"
    assert app_client.get(f"/v1/functions/{noop}/invocations/nope/logs").status_code == 404
    assert app_client.delete("/v1/functions/nope_fn").status_code == 404
    assert error_of(app_client.get("/v1/nowhere"))["code"] == "NotFound"
    assert app_client.delete("/v1/invocations").status_code == 405


@pytest.mark.parametrize("query,code", [
    ("condition=Boom", "InvalidQuery"), ("limit=0", "InvalidQuery"), ("function=9x", "InvalidName"),
    ("since=never", "InvalidQuery"), ("cursor=%%%", "InvalidQuery"),
])
def test_bad_dead_letter_queries_are_400(app_client: FlaskClient, query: str, code: str) -> None:
    response = app_client.get(f"/v1/dead-letters?{query}")
    assert response.status_code == 400
    assert error_of(response)["code"] == code


def test_stop_of_an_ended_or_unknown_invocation(app_client: FlaskClient, services: Services, noop: str) -> None:
    assert app_client.post(f"/v1/functions/{noop}/invocations/nope/stop").status_code == 404
    # Straight into the ledger with no doorbell: no worker can start it before the stop arrives.
    inv = services.ledger.create_invocation(noop, "stop_twice", f"req-{noop}", "{}")
    first = app_client.post(f"/v1/functions/{noop}/invocations/stop_twice/stop")
    assert first.status_code == 202 and first.get_json()["status"] == "Stopped"
    before = ledger_counts(services)
    again = app_client.post(f"/v1/functions/{noop}/invocations/stop_twice/stop")
    assert again.status_code == 409 and error_of(again)["code"] == "IllegalTransition"
    assert ledger_counts(services) == before
    assert services.ledger.get_by_pk(inv.pk).status.value == "Stopped"
