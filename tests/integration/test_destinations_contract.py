"""One contract for every destination kind: the records of a success, retries exhausted, event age exceeded and a
stop arrive at queue:, kafka:, a webhook and function:, field for field in Function Compute's format."""
from __future__ import annotations

import json
import uuid
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient

from taskservice.ledger.manager import utcnow
from taskservice.services import Services
from tests.support import unread_queue

if TYPE_CHECKING:
    from tests.support import Backend

KINDS = ["queue", "kafka", "webhook", "function"]
RECORD_KEYS = {"timestamp", "requestContext", "requestPayload", "responseContext", "responsePayload"}


def kafka_records(bootstrap: str, topic: str) -> list[dict[str, Any]]:
    from taskservice.kafka import tail

    return [json.loads(r.value or b"null") for r in tail(bootstrap, topic, from_beginning=True, group=None,
                                                         timeout_s=2)]


@pytest.mark.parametrize("kind", KINDS)
def test_every_outcome_reaches_the_destination_in_fc_format(
        kind: str, request: pytest.FixtureRequest, backend: Backend, services: Services, app_client: FlaskClient,
        shared_worker: Any, start_relay: Any, fn_name: str, tmp_path: Path,
        deploy: Any, wait_for_status: Any, eventually: Any, drain_queue: Any) -> None:
    sink_file = tmp_path / "sink.jsonl"
    relay_env: dict[str, Any] = {}
    receiver = None
    if kind == "queue":
        uri = f"queue:ct_{uuid.uuid4().hex[:10]}"
    elif kind == "kafka":
        broker = request.getfixturevalue("kafka_broker")
        from taskservice.kafka import ensure_topic

        uri = f"kafka:ct_{uuid.uuid4().hex[:10]}"
        ensure_topic(broker.bootstrap, uri.split(":", 1)[1])
        relay_env["kafka_bootstrap"] = broker.bootstrap
    elif kind == "webhook":
        receiver = request.getfixturevalue("http_receiver")
        uri = f"{receiver.url}/records"
        relay_env["webhook_allow"] = "127.0.0.1/32"
    else:
        sink = f"{fn_name}_sink"
        deploy(app_client, sink, "tests.handlers:record_sink")
        uri = f"function:{sink}"
    start_relay(**relay_env)

    names = {c: f"{fn_name}_{c}" for c in ("ok", "retries", "age", "stop")}
    deploy(app_client, names["ok"], "workers.handlers.echo:handler", on_success=uri, on_failure=uri)
    deploy(app_client, names["retries"], "workers.handlers.echo:handler", max_retries=1, on_failure=uri)
    deploy(app_client, names["age"], "workers.handlers.echo:handler", max_event_age_s=1, on_failure=uri)
    deploy(app_client, names["stop"], "workers.handlers.echo:handler", on_failure=uri)
    base = {"sink_file": str(sink_file)}
    ok = services.submitter.submit(names["ok"], {**base, "k": "success"})
    failing = services.submitter.submit(names["retries"], {**base, "fail": "boom"})
    # Age and stop need invocations no worker picks up: a queue nobody consumes.
    with unread_queue(backend, "parked") as settings:
        parked = Services.build(settings)
        try:
            aged = parked.submitter.submit(names["age"], {**base, "k": "too old"})
            stopped = parked.submitter.submit(names["stop"], {**base, "k": "stop me"})
        finally:
            parked.close()
    services.ledger.request_stop(stopped.pk)
    # Only once it waited past its max age may the parked invocation be rung: a worker would run it before then.
    eventually(lambda: utcnow() - aged.created_at > timedelta(seconds=1),
               what="the parked invocation to be older than max_event_age_s=1")
    services.ledger.reap(retention_s=backend.settings.retention_s)
    final = {
        "ok": wait_for_status(services, names["ok"], ok.invocation_id, {"Succeeded"}),
        "retries": wait_for_status(services, names["retries"], failing.invocation_id, {"Failed"}),
        "age": wait_for_status(services, names["age"], aged.invocation_id, {"Expired"}),
        "stop": wait_for_status(services, names["stop"], stopped.invocation_id, {"Stopped"}),
    }

    if kind == "queue":
        records = drain_queue(backend.settings, uri.split(":", 1)[1], 4)
    elif kind == "kafka":
        bootstrap = request.getfixturevalue("kafka_broker").bootstrap
        records = eventually(lambda: kafka_records(bootstrap, uri.split(":", 1)[1]), until=lambda got: len(got) >= 4,
                             timeout_s=60, what=f"4 records on {uri}")
    elif kind == "webhook":
        assert receiver is not None
        records = eventually(receiver.json_bodies, until=lambda got: len(got) >= 4, timeout_s=60,
                             what="4 records at the webhook")
        assert {r["headers"].get("X-Request-Id") for r in receiver.requests} == {i.request_id for i in final.values()}
    else:
        records = eventually(lambda: [json.loads(line) for line in sink_file.read_text().splitlines()]
                             if sink_file.exists() else [], until=lambda got: len(got) >= 4, timeout_s=60,
                             what=f"4 records written by the {uri} handler")
    by_request = {r["requestContext"]["requestId"]: r for r in records}
    assert len(records) == 4 and set(by_request) == {i.request_id for i in final.values()}

    expected = {
        "ok": ("", 1, 200, "", {**base, "k": "success"}),
        "retries": ("RetriesExhausted", 2, 200, "Unhandled", {"errorMessage": "boom", "errorType": "RequestedFailure"}),
        "age": ("EventAgeExceeded", 0, 500, "EventAgeExceeded",
                {"errorMessage": "waited longer than max_event_age_s=1", "errorType": "EventAgeExceeded"}),
        "stop": ("Stopped", 0, 500, "Stopped", {"errorMessage": "stopped on request", "errorType": "Stopped"}),
    }
    for case, inv in final.items():
        record = by_request[inv.request_id]
        condition, count, status, fn_error, response = expected[case]
        assert set(record) == RECORD_KEYS
        assert record["timestamp"] == int(inv.finished_at.timestamp() * 1000)
        assert record["requestContext"] == {
            "requestId": inv.request_id, "functionArn": f"acs:fc:local:taskservice:functions/{names[case]}",
            "condition": condition, "approximateInvokeCount": count}
        assert record["responseContext"] == {"statusCode": status, "functionError": fn_error}
        assert isinstance(record["requestPayload"], str) and json.loads(record["requestPayload"]) == json.loads(
            inv.payload)
        assert isinstance(record["responsePayload"], str) and json.loads(record["responsePayload"]) == response
        # The ledger says the record went out, and failures are also in the dead-letter store.
        view = app_client.get(f"/v1/functions/{names[case]}/invocations/{inv.invocation_id}").get_json()
        assert [(d["destination"], d["status"]) for d in view["destinations"]] == [(uri, "delivered")]
        letters = app_client.get(f"/v1/dead-letters?function={names[case]}").get_json()["items"]
        assert [d["condition"] for d in letters] == ([] if case == "ok" else [condition])
