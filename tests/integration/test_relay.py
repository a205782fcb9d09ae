"""The relay under failure: killed mid-delivery, and destinations that are down for a while."""
from __future__ import annotations

import subprocess
import uuid
from collections import Counter
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.ledger.outbox import DELIVERED, PENDING
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.kafka_broker import KafkaBroker
    from tests.support import Backend, Launcher

REPORT = Path(__file__).resolve().parents[1] / "artifacts" / "relay-duplicates.txt"


def finish_invocations(services: Services, function: str, count: int) -> list[str]:
    """Drive `count` invocations to Succeeded through the ledger itself (no broker needed), so their records wait
    in the outbox. Returns their request ids."""
    request_ids = []
    for n in range(count):
        inv = services.ledger.create_invocation(function, f"bulk_{n}", str(uuid.uuid4()), f'{{"n":{n}}}')
        claim = services.ledger.claim(inv.pk, "test-driver", 60)
        assert claim is not None and not isinstance(claim, type(inv))
        services.ledger.succeed(inv.pk, 1, {"n": n})
        request_ids.append(inv.request_id)
    return request_ids


def outbox_states(services: Services, request_ids: list[str]) -> Counter[str]:
    from sqlalchemy import select

    from taskservice.ledger.models import DELIVERIES

    with services.engine.connect() as conn:
        rows = conn.execute(select(DELIVERIES.c.status).where(DELIVERIES.c.request_id.in_(request_ids))).all()
    return Counter(r.status for r in rows)


def test_relay_killed_mid_delivery_loses_nothing(app_client: FlaskClient, services: Services, backend: Backend,
                                                 start_relay: Any, fn_name: str,
                                                 deploy: Any, eventually: Any, drain_queue: Any) -> None:
    queue = f"kill_{uuid.uuid4().hex[:10]}"
    deploy(app_client, fn_name, "workers.handlers.noop:handler", on_success=f"queue:{queue}")
    request_ids = finish_invocations(services, fn_name, 1000)
    assert outbox_states(services, request_ids) == Counter({PENDING: 1000})
    first = start_relay(relay_batch=50)
    eventually(lambda: outbox_states(services, request_ids), until=lambda states: states[DELIVERED] >= 100,
               timeout_s=60, what="the first deliveries")
    first.kill()  # SIGKILL mid-stream: claimed batches stay claimed until their lease lapses
    pending_at_kill = outbox_states(services, request_ids)[PENDING]
    assert pending_at_kill > 0, "the relay finished before it could be killed; the test proves nothing"
    start_relay(relay_batch=50)
    eventually(lambda: outbox_states(services, request_ids), until=lambda states: states == Counter({DELIVERED: 1000}),
               timeout_s=120, what="every delivery")
    records = drain_queue(backend.settings, queue, 1000, timeout_s=60)
    seen = Counter(r["requestContext"]["requestId"] for r in records)
    assert set(seen) == set(request_ids)  # none lost
    duplicates = sum(seen.values()) - len(seen)
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a") as fh:
        fh.write(f"{backend.name}: killed with {pending_at_kill} of 1000 pending; {duplicates} duplicate(s)\n")
    print(f"\n[{backend.name}] relay SIGKILLed with {pending_at_kill}/1000 pending: {duplicates} duplicates")


@pytest.fixture(scope="module")
def production(new_backend: Any) -> Backend:
    """Postgres + RabbitMQ only: these tests stop a real server, which the embedded default does not have."""
    return new_backend("postgres")


def _rabbitmq(action: str) -> None:
    subprocess.run(["rabbitmqctl", "-q", action], check=True, capture_output=True, timeout=120)


def test_records_wait_while_rabbitmq_is_down(production: Backend, launch: Launcher, deploy: Any,
                                             eventually: Any, drain_queue: Any) -> None:
    services = Services.build(production.settings)
    app = create_app(production.settings).test_client()
    queue = f"down_{uuid.uuid4().hex[:10]}"
    deploy(app, "down_fn", "workers.handlers.noop:handler", on_success=f"queue:{queue}")
    relay = launch.relay(production)
    try:
        _rabbitmq("stop_app")
        try:
            request_ids = finish_invocations(services, "down_fn", 20)
            eventually(lambda: _has_errors(services, request_ids), timeout_s=30,
                       what="failed delivery attempts to be recorded")
            assert outbox_states(services, request_ids) == Counter({PENDING: 20})
            statuses = {services.ledger.find_invocation("down_fn", f"bulk_{n}").status.value for n in range(20)}
            assert statuses == {"Succeeded"}  # the invocation's own status does not depend on its destination
        finally:
            _rabbitmq("start_app")
        eventually(lambda: outbox_states(services, request_ids), until=lambda now: now == Counter({DELIVERED: 20}),
                   timeout_s=90, what="recovery")
        records = drain_queue(production.settings, queue, 20)
        assert {r["requestContext"]["requestId"] for r in records} == set(request_ids)
    finally:
        relay.stop()
        services.close()


def test_records_wait_while_kafka_is_down(backend: Backend, services: Services, app_client: FlaskClient,
                                          start_relay: Any, fn_name: str, own_kafka_broker: KafkaBroker,
                                          deploy: Any, eventually: Any) -> None:
    from taskservice.kafka import ensure_topic, tail

    broker = own_kafka_broker
    try:
        topic = f"down_{uuid.uuid4().hex[:10]}"
        ensure_topic(broker.bootstrap, topic)
        deploy(app_client, fn_name, "workers.handlers.noop:handler", on_success=f"kafka:{topic}")
        start_relay(kafka_bootstrap=broker.bootstrap)
        broker.stop()
        request_ids = finish_invocations(services, fn_name, 20)
        eventually(lambda: _has_errors(services, request_ids), timeout_s=60,
                   what="failed delivery attempts to be recorded")
        assert outbox_states(services, request_ids)[DELIVERED] == 0
        broker.start()
        ensure_topic(broker.bootstrap, topic)  # in-memory broker: the topic went with it
        eventually(lambda: outbox_states(services, request_ids), until=lambda now: now == Counter({DELIVERED: 20}),
                   timeout_s=90, what="recovery")
        got = {r.key.decode() for r in tail(broker.bootstrap, topic, from_beginning=True, group=None, timeout_s=3)
               if r.key}
        assert got == set(request_ids)
    finally:
        broker.stop()


def _has_errors(services: Services, request_ids: list[str]) -> bool:
    from sqlalchemy import func, select

    from taskservice.ledger.models import DELIVERIES

    with services.engine.connect() as conn:
        failed_attempts = conn.execute(select(func.count()).select_from(DELIVERIES).where(
            DELIVERIES.c.request_id.in_(request_ids), DELIVERIES.c.last_error.is_not(None))).scalar_one()
    return bool(failed_attempts)


def test_two_relays_share_the_work_without_double_sending(app_client: FlaskClient, services: Services,
                                                          backend: Backend, start_relay: Any, fn_name: str,
                                                          deploy: Any, eventually: Any, drain_queue: Any) -> None:
    queue = f"pair_{uuid.uuid4().hex[:10]}"
    deploy(app_client, fn_name, "workers.handlers.noop:handler", on_success=f"queue:{queue}")
    request_ids = finish_invocations(services, fn_name, 400)
    start_relay(relay_batch=20)
    start_relay(relay_batch=20)
    eventually(lambda: outbox_states(services, request_ids), until=lambda states: states == Counter({DELIVERED: 400}),
               timeout_s=120, what="every delivery")
    seen = Counter(r["requestContext"]["requestId"] for r in drain_queue(backend.settings, queue, 400))
    assert set(seen) == set(request_ids)
    assert max(seen.values()) == 1  # claims keep two healthy relays off each other's records
