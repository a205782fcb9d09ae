"""Triggers API and dead-letter replay through the REST API, on both backends: idempotent replays linked to their
original, edited payloads, replays by filter and of external Function Compute records; bad input changes nothing."""
from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select

from taskservice.ledger.models import DEAD_LETTERS, INVOCATIONS, TRIGGERS
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import WorkerProcess


def counts(services: Services) -> tuple[int, ...]:
    with services.engine.connect() as conn:
        return tuple(int(conn.execute(select(func.count()).select_from(t)).scalar_one())
                     for t in (TRIGGERS, INVOCATIONS, DEAD_LETTERS))


# --- triggers -----------------------------------------------------------------------------------------------------
def test_trigger_crud(app_client: FlaskClient, fn_name: str, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    name = f"tr_{uuid.uuid4().hex[:8]}"
    created = app_client.put(f"/v1/triggers/{name}", json={"function": fn_name, "topics": ["orders.v1"]})
    assert created.status_code == 201, created.get_json()
    body = created.get_json()
    assert body["batch_size"] == 100 and body["starting_position"] == "latest" and body["enabled"] is True
    assert body["consumer_group"] == f"taskservice-{name}" and body["lag"] == {"total": None, "partitions": []}
    replaced = app_client.put(f"/v1/triggers/{name}", json={"function": fn_name, "topics": ["a", "b"],
                                                             "batch_size": 10000, "batching_window_s": 15,
                                                             "enabled": False, "consumer_group": "g.1"})
    assert replaced.status_code == 200 and replaced.get_json()["topics"] == ["a", "b"]
    assert app_client.get(f"/v1/triggers/{name}").get_json()["consumer_group"] == "g.1"
    assert name in [t["name"] for t in app_client.get("/v1/triggers").get_json()["items"]]
    assert app_client.delete(f"/v1/triggers/{name}").status_code == 204
    assert app_client.get(f"/v1/triggers/{name}").status_code == 404


TRIGGER_CASES: list[tuple[str, Any, int, str]] = [
    ("batch size 0", {"batch_size": 0}, 422, "InvalidTriggerConfig"),
    ("batch size 10001", {"batch_size": 10001}, 422, "InvalidTriggerConfig"),
    ("window 16 s", {"batching_window_s": 16}, 422, "InvalidTriggerConfig"),
    ("negative window", {"batching_window_s": -1}, 422, "InvalidTriggerConfig"),
    ("starting position", {"starting_position": "middle"}, 422, "InvalidTriggerConfig"),
    ("no topics", {"topics": []}, 422, "InvalidTriggerConfig"),
    ("bad topic", {"topics": ["a b"]}, 422, "InvalidTriggerConfig"),
    ("repeated topic", {"topics": ["a", "a"]}, 422, "InvalidTriggerConfig"),
    ("unknown field", {"partitions": 3}, 422, "InvalidTriggerConfig"),
    ("unknown function", {"function": "nope_nope_nope"}, 404, "FunctionNotFound"),
]


@pytest.mark.parametrize("what,change,status,code", TRIGGER_CASES, ids=[c[0] for c in TRIGGER_CASES])
def test_bad_trigger_configs_are_refused_and_change_nothing(app_client: FlaskClient, services: Services,
                                                            fn_name: str, what: str, change: dict[str, Any],
                                                            status: int, code: str, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    before = counts(services)
    response = app_client.put(f"/v1/triggers/tr_{uuid.uuid4().hex[:8]}",
                              json={"function": fn_name, "topics": ["t"], **change})
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert counts(services) == before


def test_trigger_bad_requests(app_client: FlaskClient, services: Services) -> None:
    before = counts(services)
    assert app_client.put("/v1/triggers/1bad", json={"function": "f", "topics": ["t"]}).status_code == 400
    assert app_client.put("/v1/triggers/ok", data=b"{", content_type="application/json").status_code == 400
    assert app_client.put("/v1/triggers/ok", json=[1]).status_code == 422
    assert app_client.get("/v1/triggers/missing_one").status_code == 404
    assert app_client.delete("/v1/triggers/missing_one").status_code == 404
    assert counts(services) == before


# --- replay -------------------------------------------------------------------------------------------------------
@pytest.fixture
def failed_dead_letter(app_client: FlaskClient, services: Services, submit: Any,
                       wait_for_status: Any) -> Callable[[str], dict[str, Any]]:
    """`failed_dead_letter(fn)`: a real failure (echo raising, no retries); returns its dead letter."""
    def fail(fn: str) -> dict[str, Any]:
        iid = submit(app_client, fn, {"fail": "boom", "n": 1})
        wait_for_status(services, fn, iid, {"Failed"})
        letters = app_client.get(f"/v1/dead-letters?function={fn}").get_json()["items"]
        return next(d for d in letters if d["invocationId"] == iid)

    return fail


def test_replay_twice_gives_one_invocation_linked_to_the_original(
        app_client: FlaskClient, services: Services, shared_worker: WorkerProcess, fn_name: str,
        deploy: Any, wait_for_status: Any, failed_dead_letter: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.echo:handler", max_retries=0)
    dead = failed_dead_letter(fn_name)
    first = app_client.post(f"/v1/dead-letters/{dead['id']}/replay")
    assert first.status_code == 202, first.get_json()
    replay = first.get_json()
    assert replay["replayOf"] == dead["requestId"] and replay["function"] == fn_name
    again = app_client.post(f"/v1/dead-letters/{dead['id']}/replay", json={})
    assert again.status_code == 409
    assert again.get_json()["invocation"]["invocationId"] == replay["invocationId"]
    view = app_client.get(f"/v1/functions/{fn_name}/invocations/{replay['invocationId']}").get_json()
    assert view["replayOf"] == dead["requestId"] and view["payload"] == {"fail": "boom", "n": 1}
    forced = app_client.post(f"/v1/dead-letters/{dead['id']}/replay", json={"force": True})
    assert forced.status_code == 202 and forced.get_json()["invocationId"] != replay["invocationId"]
    replays = app_client.get(f"/v1/invocations?function={fn_name}&prefix=replay_").get_json()["items"]
    assert len(replays) == 2
    for item in replays:  # settle before the next test counts rows: the shared worker runs them
        wait_for_status(services, fn_name, item["invocationId"], {"Failed"})


def test_replay_with_an_edited_payload(app_client: FlaskClient, services: Services, shared_worker: WorkerProcess,
                                       fn_name: str,
                                       deploy: Any, wait_for_status: Any, failed_dead_letter: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.echo:handler", max_retries=0)
    dead = failed_dead_letter(fn_name)
    response = app_client.post(f"/v1/dead-letters/{dead['id']}/replay", json={"payload": {"fixed": True}})
    assert response.status_code == 202, response.get_json()
    done = wait_for_status(services, fn_name, response.get_json()["invocationId"], {"Succeeded"})
    assert json.loads(done.result) == {"fixed": True} and done.replay_of == dead["requestId"]


def test_replay_many_by_filter_and_external_records(app_client: FlaskClient, services: Services, fn_name: str
, deploy: Any) -> None:
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    for offset in range(3):  # dead letters of records that never became invocations, as Kafka ingest writes them
        services.dead_letters.reject(fn_name, f"kafka_t_0_{offset}_{offset}", json.dumps([{"offset": offset}]),
                                     error_type="InvalidRecord", error="not UTF-8")
    body = {"function": fn_name, "condition": "Invalid"}
    first = app_client.post("/v1/dead-letters/replay", json=body).get_json()
    assert (first["replayed"], first["duplicate"], first["failed"]) == (3, 0, 0)
    second = app_client.post("/v1/dead-letters/replay", json=body).get_json()
    assert (second["replayed"], second["duplicate"]) == (0, 3)

    record = {"timestamp": 1, "requestContext": {"requestId": str(uuid.uuid4()), "condition": "RetriesExhausted",
                                                 "functionArn": f"acs:fc:cn-hangzhou:123:functions/{fn_name}",
                                                 "approximateInvokeCount": 4},
              "requestPayload": json.dumps({"from": "fc"}), "responseContext": {}, "responsePayload": "{}"}
    external = app_client.post("/v1/dead-letters/replay", json={"records": [record, {"nope": 1}]}).get_json()
    assert [o["outcome"] for o in external["items"]] == ["replayed", "failed"]
    inv = services.ledger.get_invocation(fn_name, external["items"][0]["invocationId"])
    assert json.loads(inv.payload) == {"from": "fc"} and inv.replay_of == record["requestContext"]["requestId"]
    assert app_client.post("/v1/dead-letters/replay", json={"records": [record]}).get_json()["duplicate"] == 1


REPLAY_CASES: list[tuple[str, str, dict[str, Any], int, str]] = [
    ("unknown dead letter", "/v1/dead-letters/999999999/replay", {"json": {}}, 404, "DeadLetterNotFound"),
    ("malformed JSON", "/v1/dead-letters/1/replay", {"data": b"{", "content_type": "application/json"}, 400,
     "MalformedJSON"),
    ("unknown field", "/v1/dead-letters/1/replay", {"json": {"payloadd": 1}}, 422, "InvalidReplayRequest"),
    ("force not bool", "/v1/dead-letters/1/replay", {"json": {"force": "yes"}}, 422, "InvalidReplayRequest"),
    ("filter and records", "/v1/dead-letters/replay", {"json": {"function": "f", "records": []}}, 422,
     "InvalidReplayRequest"),
    ("limit over 1000", "/v1/dead-letters/replay", {"json": {"limit": 1001}}, 422, "InvalidReplayRequest"),
    ("bad condition", "/v1/dead-letters/replay", {"json": {"condition": "Bad"}}, 422, "InvalidReplayRequest"),
    ("unknown function", "/v1/dead-letters/replay", {"json": {"function": "no_such_fn_x"}}, 404,
     "FunctionNotFound"),
    ("empty body", "/v1/dead-letters/replay", {"data": b"", "content_type": "application/json"}, 400,
     "MalformedJSON"),
]


@pytest.mark.parametrize("what,path,kwargs,status,code", REPLAY_CASES, ids=[c[0] for c in REPLAY_CASES])
def test_bad_replays_are_refused_and_change_nothing(app_client: FlaskClient, services: Services, what: str,
                                                    path: str, kwargs: dict[str, Any], status: int,
                                                    code: str) -> None:
    before = counts(services)
    response = app_client.post(path, **kwargs)
    assert response.status_code == status, response.get_json()
    assert response.get_json()["error"]["code"] == code
    assert counts(services) == before
