"""Queue triggers and `taskservice consume`: batches of broker messages as invocations, acknowledged after the
ledger insert. On RabbitMQ the consumer is SIGKILLed twice while 5,000 messages go through in batches of 100, once
before a batch's insert and once between its insert and its acknowledgements, and every message still ends in
exactly one invocation. Messages that can never be submitted become dead letters."""
from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import pytest
from flask.testing import FlaskClient
from kombu import Connection, Producer
from sqlalchemy import text

from taskservice.broker import broker_options
from taskservice.destinations.queue import EXCHANGE, record_queue
from taskservice.ledger.queries import InvocationFilter
from taskservice.services import Services
from tests.amqp_ack_hold import ack_hold
from tests.support import AMQP_URL, backends_running, lock_holder

if TYPE_CHECKING:
    from tests.support import Backend
    from tests.tcp_relay import TcpRelay


@pytest.fixture
def publish(backend: Backend) -> Iterator[Callable[..., None]]:
    """Publish raw messages to a queue on the backend's broker (as any producer would, with a message_id)."""
    url, options = broker_options(backend.settings)
    conn = Connection(url, transport_options=options)
    producer = Producer(conn.default_channel, exchange=EXCHANGE)

    def _publish(queue: str, bodies: list[bytes], *, ids: list[str] | None = None) -> None:
        record_queue(queue)(producer.channel).declare()
        for n, body in enumerate(bodies):
            producer.publish(body, routing_key=queue, delivery_mode=2, content_type="application/json",
                             content_encoding="binary", message_id=None if ids is None else ids[n])

    yield _publish
    conn.release()


def _all(services: Services, fn: str) -> list[Any]:
    return services.ledger.list_invocations(InvocationFilter(function=fn), limit=1000).items


def _message_ids(services: Services, fn: str) -> Counter[str]:
    return Counter(m["messageId"] for inv in _all(services, fn) for m in json.loads(inv.payload))


def _queue_trigger(app_client: FlaskClient, name: str, fn: str, queue: str, **extra: Any) -> None:
    answer = app_client.put(f"/v1/triggers/{name}", json={"kind": "queue", "function": fn, "queue": queue, **extra})
    assert answer.status_code == 201, answer.get_json()


def test_messages_become_batch_invocations_and_bad_ones_dead_letters(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        publish: Callable[..., None], start_service: Callable[..., Any], eventually_true: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    queue = f"q_{fn_name}"
    _queue_trigger(app_client, f"{fn_name}_q", fn_name, queue, batch_size=10, batching_window_s=0.5)
    bodies = [json.dumps({"n": n}).encode() for n in range(25)] + [b"\xff\xfe not utf-8"]
    publish(queue, bodies, ids=[f"m{n}" for n in range(26)])
    start_service("consume")
    ids = eventually_true(lambda: (c := _message_ids(services, fn_name)) and sum(c.values()) >= 25 and c, 30,
                          "25 messages in the ledger")
    assert set(ids) == {f"m{n}" for n in range(25)} and max(ids.values()) == 1
    invocations = _all(services, fn_name)
    assert all(len(json.loads(i.payload)) <= 10 for i in invocations) and len(invocations) >= 3
    first = json.loads(invocations[-1].payload)[0]
    assert {"messageId", "body", "contentType", "headers", "routingKey", "redelivered"} <= set(first)
    assert json.loads(first["body"]) == {"n": int(first["messageId"][1:])}
    letters = eventually_true(lambda: app_client.get(f"/v1/dead-letters?function={fn_name}").get_json()["items"],
                              15, "a dead letter")
    assert len(letters) == 1 and letters[0]["errorType"] == "InvalidRecord"
    status = eventually_true(lambda: (s := app_client.get(f"/v1/triggers/{fn_name}_q").get_json()["status"])
                             .get("deadLetters") and s, 10, "the trigger's counters")
    assert status["messages"] == 25 and status["deadLetters"] == 1


@pytest.mark.parametrize("body", [{"kind": "queue", "function": "f", "queue": "bad queue!"},
                                  {"kind": "queue", "function": "f", "queue": "q", "batch_size": 20000},
                                  {"kind": "queue", "function": "f", "queue": "q", "batching_window_s": 60}])
def test_bad_queue_triggers_are_refused(app_client: FlaskClient, fn_name: str, body: dict[str, Any]) -> None:
    answer = app_client.put(f"/v1/triggers/{fn_name}_q", json=body)
    assert answer.status_code == 422
    assert any(f in answer.get_json()["error"]["message"] for f in ("queue", "batch_size", "batching_window_s"))
    assert app_client.get(f"/v1/triggers/{fn_name}_q").status_code == 404


# RabbitMQ only: the embedded filesystem transport drops a message when it is read, so only RabbitMQ redelivers
# what a SIGKILLed consumer held (documented in taskservice/queue_trigger.py).
@pytest.mark.parametrize("backend", ["postgres"], indirect=True)
def test_5000_messages_each_in_exactly_one_invocation_with_the_consumer_sigkilled_twice(
        backend: Backend, app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        publish: Callable[..., None], start_service: Callable[..., Any], eventually_true: Callable[..., Any],
        tcp_relay: Callable[[], TcpRelay]) -> None:
    """The two SIGKILLs land where a batch can be lost or doubled, made certain rather than left to timing: first
    while the consumer's ledger insert waits (for a lock the test holds), so the batch is in neither the ledger nor
    acknowledged; then after a batch's insert but before the broker has its acknowledgements (a relay keeps them),
    so the batch is in the ledger and comes back anyway."""
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    queue = f"q_{fn_name}"
    _queue_trigger(app_client, f"{fn_name}_q", fn_name, queue, batch_size=100, batching_window_s=1)
    publish(queue, [json.dumps({"n": n}).encode() for n in range(5000)], ids=[f"m{n}" for n in range(5000)])

    def written() -> int:
        return sum(_message_ids(services, fn_name).values())

    with lock_holder(services.engine) as blocker:
        blocker.execute(text("LOCK TABLE queue_messages IN SHARE MODE"))  # inserts wait; reads go on
        consumer = start_service("consume")
        eventually_true(lambda: backends_running(services.engine, waiting_for_a_lock=True), 60,
                        "the consumer's first insert to wait")
        consumer.kill()  # SIGKILL with the first batch delivered, unacknowledged and not in the ledger
        blocker.rollback()

    hold = ack_hold()
    relay = tcp_relay()
    amqp = urlsplit(AMQP_URL)
    port = relay.forward("127.0.0.1", 0, str(amqp.hostname), int(amqp.port or 5672), upstream_gate=hold.gate)
    through_relay = amqp._replace(netloc=f"{amqp.username}:{amqp.password}@127.0.0.1:{port}").geturl()
    consumer = start_service("consume", broker_url=through_relay)
    eventually_true(lambda: written() >= 2500, 120, "2,500 messages in")
    hold.arm()  # the consumer's next acknowledgement, and all it sends after, stay in the relay
    eventually_true(hold.holding.is_set, 60, "the consumer's next acknowledgement to be held")
    consumer.kill()  # SIGKILL with that batch in the ledger but unacknowledged
    relay.close()
    held = hold.held
    start_service("consume")

    ids = eventually_true(lambda: (c := _message_ids(services, fn_name)) and len(c) >= 5000 and c, 180,
                          "all 5,000 messages in the ledger")
    assert set(ids) == {f"m{n}" for n in range(5000)}
    assert max(ids.values()) == 1, [m for m, count in ids.items() if count > 1][:10]
    assert all(len(json.loads(i.payload)) <= 100 for i in _all(services, fn_name))
    redelivered = {m["messageId"] for i in _all(services, fn_name) for m in json.loads(i.payload) if m["redelivered"]}
    assert "m0" in redelivered, "the first batch came back after the first kill and went into the ledger then"
    eventually_true(lambda: app_client.get(f"/v1/triggers/{fn_name}_q").get_json()["status"].get("duplicates", 0)
                    >= held, 30, f"the {held} messages whose acknowledgements were held, redelivered, to be counted "
                    "as duplicates")

