"""The relay under failure: killed mid-delivery, and destinations that are down for a while."""
from __future__ import annotations

import contextlib
import fcntl
import os
import subprocess
import threading
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from taskservice import create_app
from taskservice.ledger.models import DELIVERIES
from taskservice.ledger.outbox import DELIVERED, PENDING
from taskservice.services import Services
from tests.support import backends_running, lock_holder

if TYPE_CHECKING:
    from tests.kafka_broker import KafkaBroker
    from tests.support import Backend, Launcher, RelayProcess

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
    """The SIGKILL lands where a record can be lost or doubled, made certain rather than left to timing: after the
    relay's first batch is in the broker (RabbitMQ confirmed it; the embedded broker holds its files) and before the
    relay marked it delivered, because the test holds a lock that makes that UPDATE wait. After a restart nothing is
    lost and every record of that batch is sent again (at least once: README, "Transactional outbox")."""
    queue = f"kill_{uuid.uuid4().hex[:10]}"
    deploy(app_client, fn_name, "workers.handlers.noop:handler", on_success=f"queue:{queue}")
    request_ids = finish_invocations(services, fn_name, 1000)
    assert outbox_states(services, request_ids) == Counter({PENDING: 1000})
    hold = _published_not_marked_postgres if backend.name == "postgres" else _published_not_marked_embedded
    with hold(services, backend, queue, start_relay, eventually) as first:
        first.kill()  # SIGKILL with a batch in the broker but not marked delivered; its claim stays until it lapses
    in_flight = _claimed_pending(services, request_ids)
    assert len(in_flight) == 50 and outbox_states(services, request_ids) == Counter({PENDING: 1000})
    start_relay(relay_batch=50)
    eventually(lambda: outbox_states(services, request_ids), until=lambda states: states == Counter({DELIVERED: 1000}),
               timeout_s=120, what="every delivery")
    records = drain_queue(backend.settings, queue, 1000, timeout_s=60)
    seen = Counter(r["requestContext"]["requestId"] for r in records)
    assert set(seen) == set(request_ids)  # none lost
    assert [r for r in in_flight if seen[r] < 2] == [], "every record in flight at the kill was sent again"
    duplicates = sum(seen.values()) - len(seen)
    assert duplicates >= len(in_flight)
    REPORT.parent.mkdir(exist_ok=True)
    with REPORT.open("a") as fh:
        fh.write(f"{backend.name}: killed with {len(in_flight)} of 1000 in flight; {duplicates} duplicate(s)\n")


def _claimed_pending(services: Services, request_ids: list[str]) -> set[str]:
    """The records a relay claimed and did not mark: the batch it was delivering."""
    from sqlalchemy import select

    from taskservice.ledger.models import DELIVERIES

    with services.engine.connect() as conn:
        rows = conn.execute(select(DELIVERIES.c.request_id).where(
            DELIVERIES.c.request_id.in_(request_ids), DELIVERIES.c.status == PENDING,
            DELIVERIES.c.claim_expires_at.is_not(None))).all()
    return {r.request_id for r in rows}


@contextlib.contextmanager
def _published_not_marked_postgres(services: Services, backend: Backend, queue: str, start_relay: Any,
                                   eventually: Any) -> Iterator[RelayProcess]:
    """Yield a relay waiting in `Outbox.delivered` for a table lock the test holds, its first batch confirmed by
    RabbitMQ (the destination awaits the confirms before returning). The claim and the mark are both UPDATEs of the
    deliveries table, so the lock has to arrive between them: a first SHARE lock makes the claim's UPDATE wait, a
    second SHARE request queues behind that waiting UPDATE, and when the first is released Postgres grants the
    claim's UPDATE and, the moment the claim commits, the second lock (the releasing transaction grants it, in queue
    order) — before the relay can publish and come back to mark the batch."""
    table = DELIVERIES.name

    def waiting(statement_like: str) -> int:
        return backends_running(services.engine, statement_like, waiting_for_a_lock=True)

    with lock_holder(services.engine) as first, lock_holder(services.engine) as second:
        first.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
        relay = start_relay(relay_batch=50)
        eventually(lambda: waiting(f"UPDATE {table} SET claimed_by=%"), timeout_s=60,
                   what="the relay's first claim to wait")
        granted = threading.Event()

        def queue_behind_the_claim() -> None:
            second.execute(text(f"LOCK TABLE {table} IN SHARE MODE"))
            granted.set()

        locker = threading.Thread(target=queue_behind_the_claim, daemon=True)
        locker.start()
        eventually(lambda: waiting(f"LOCK TABLE {table}%"), timeout_s=30,
                   what="the second lock to queue behind the claim")
        first.rollback()
        eventually(granted.is_set, timeout_s=30, what="the second lock, once the claim committed")
        locker.join()
        eventually(lambda: waiting(f"UPDATE {table} SET status=%delivered_at=%"), timeout_s=60,
                   what="the relay to publish its batch and wait to mark it delivered")
        try:
            yield relay
        finally:
            second.rollback()


@contextlib.contextmanager
def _published_not_marked_embedded(services: Services, backend: Backend, queue: str, start_relay: Any,
                                   eventually: Any) -> Iterator[RelayProcess]:
    """Yield a relay whose first batch is in the embedded broker's folder while the test holds SQLite's write lock,
    so the batch cannot be marked delivered (the relay waits in BEGIN IMMEDIATE, or fails and tries again after its
    busy timeout: either way unmarked). SQLite has no lock queue to slip a lock in between the claim and the mark,
    so the order comes from the broker: the test holds an exclusive flock on the exchange's binding table, which the
    relay's destination must lock before it publishes anything; once the relay waits on that flock (/proc/locks) its
    claim has committed, the test takes the write lock, then lets the relay publish."""
    from kombu import Connection

    from taskservice.broker import broker_options
    from taskservice.destinations.queue import EXCHANGE, record_queue

    url, options = broker_options(backend.settings)
    with Connection(url, transport_options=options) as conn:
        record_queue(queue)(conn.default_channel).declare()  # the binding table exists before the relay starts
    folder = Path(options["data_folder_out"])
    table = Path(options["control_folder"]) / f"{EXCHANGE.name}.exchange"
    with table.open("rb") as bindings, services.engine.connect() as writer:
        fcntl.flock(bindings, fcntl.LOCK_EX)
        relay = start_relay(relay_batch=50)
        inode = os.fstat(bindings.fileno()).st_ino

        def relay_waits_for_the_table() -> bool:  # a waiter's line: "1: -> FLOCK  ADVISORY  WRITE <pid> <dev>:<ino> …"
            lines = (line.split() for line in Path("/proc/locks").read_text().splitlines())
            return any(f[1] == "->" and f[2] == "FLOCK" and f[5] == str(relay.proc.pid)
                       and f[6].rsplit(":", 1)[-1] == str(inode) for f in lines if len(f) > 6)

        eventually(relay_waits_for_the_table, timeout_s=60, what="the relay to wait for the broker's binding table")
        writer.begin()  # BEGIN IMMEDIATE: SQLite's write lock, granted at once (the claim has committed)
        fcntl.flock(bindings, fcntl.LOCK_UN)
        eventually(lambda: len(list(folder.glob(f"*.{queue}.msg"))), until=lambda n: n >= 50, timeout_s=60,
                   what="the relay's first batch in the broker")
        try:
            yield relay
        finally:
            writer.rollback()


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
    # A lease far longer than any stall: this tests that claims are exclusive, not what happens when one lapses
    # (with the suite's 3 s lease a 3 s stall let the other relay take and re-send a claimed batch).
    start_relay(relay_batch=20, relay_lease_s=120)
    start_relay(relay_batch=20, relay_lease_s=120)
    eventually(lambda: outbox_states(services, request_ids), until=lambda states: states == Counter({DELIVERED: 400}),
               timeout_s=120, what="every delivery")
    seen = Counter(r["requestContext"]["requestId"] for r in drain_queue(backend.settings, queue, 400))
    assert set(seen) == set(request_ids)
    assert max(seen.values()) == 1  # claims keep two healthy relays off each other's records
