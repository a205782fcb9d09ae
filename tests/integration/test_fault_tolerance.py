"""Design §6 on both backends: lost doorbells are found in seconds (and a queued backlog is left alone), SIGTERM
drains, and `taskservice dev` leaves nothing behind when it is SIGKILLed.

Each test that needs an unconsumed queue uses a private one, so no other worker (or reaper) can touch its doorbells.
"""
from __future__ import annotations

import signal
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from kombu import Queue
from sqlalchemy import select, update

from taskservice.clock import utcnow
from taskservice.ledger.models import INVOCATIONS
from taskservice.services import Services
from workers.reaper import Reaper

if TYPE_CHECKING:
    from tests.support import Backend


@pytest.fixture
def private(backend: Backend) -> Iterator[tuple[dict[str, Any], Services]]:
    """Settings overrides for a queue of this test's own, and services that ring it."""
    overrides = {"queue": f"{backend.settings.queue}_{uuid.uuid4().hex[:8]}"}
    services = Services.build(backend.settings.merged(**overrides))
    yield overrides, services
    services.close()


def take_doorbells(services: Services, count: int) -> list[int]:
    """Take `count` doorbells off the queue and acknowledge them, as a worker killed between ack and claim does:
    the broker forgets them, the ledger still says the invocations wait."""
    taken: list[int] = []
    with services.dispatcher.celery.connection_for_write() as conn:
        queue = Queue(services.settings.queue, no_declare=True)(conn.default_channel)
        for _ in range(count):
            message = queue.get(no_ack=True)
            assert message is not None, f"only {len(taken)} doorbell(s) were queued"
            args = message.decode()[0]  # Celery's message body: [args, kwargs, embed]
            taken.append(int(args[0]))
    return taken


def test_a_doorbell_acked_and_lost_before_its_claim_is_rung_again_within_seconds(
        app_client: FlaskClient, private: tuple[dict[str, Any], Services], start_worker: Callable[..., Any],
        deploy: Callable[..., Any], wait_for_status: Callable[..., Any], fn_name: str) -> None:
    overrides, services = private
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    inv = services.submitter.submit(fn_name, {"lost": True})
    assert take_doorbells(services, 1) == [inv.pk]
    lost_at = time.monotonic()
    start_worker(**overrides)
    done = wait_for_status(services, fn_name, inv.invocation_id, {"Succeeded"}, timeout_s=20)
    assert done.attempts == 1
    print(f"lost doorbell found and run {time.monotonic() - lost_at:.1f}s after the loss (worker start included)")


def test_a_deferred_invocation_whose_delayed_message_was_lost_runs_once_due(
        app_client: FlaskClient, private: tuple[dict[str, Any], Services], start_worker: Callable[..., Any],
        deploy: Callable[..., Any], wait_for_status: Callable[..., Any], fn_name: str) -> None:
    overrides, services = private
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    # What a backoff or a concurrency deferral leaves when its delayed (ETA) message dies with the worker holding
    # it: a waiting row with a start time in the near future, and no message anywhere.
    inv = services.ledger.create_invocation(fn_name, "deferred_lost", str(uuid.uuid4()), "{}",
                                            queue=services.settings.queue)
    services.ledger.defer(inv.pk, 1.0)
    due = services.ledger.get_by_pk(inv.pk).not_before
    start_worker(**overrides)
    done = wait_for_status(services, fn_name, inv.invocation_id, {"Succeeded"}, timeout_s=20)
    assert done.attempts == 1 and done.started_at >= due


def test_a_queued_backlog_is_never_rung_again_and_only_its_lost_doorbells_are(
        app_client: FlaskClient, private: tuple[dict[str, Any], Services], deploy: Callable[..., Any],
        fn_name: str) -> None:
    _, services = private
    deploy(app_client, fn_name, "workers.handlers.noop:handler")
    pks = [services.submitter.submit(fn_name, {"n": n}).pk for n in range(200)]
    # Nothing consumes this queue: the backlog is as old as we say, far past the reaper's grace.
    with services.engine.begin() as conn:
        conn.execute(update(INVOCATIONS).where(INVOCATIONS.c.id.in_(pks))
                     .values(dispatched_at=utcnow() - timedelta(minutes=10)))
    reaper = Reaper(services.ledger, services.submitter, interval_s=0.5, retention_s=86400)
    for _ in range(3):
        reaper.run_once()
    assert reaper.rerung == 0, "a legitimately queued backlog was rung again"
    lost = take_doorbells(services, 10)
    assert lost == pks[:10]  # first in, first out
    reaper.run_once()
    assert reaper.rerung == 0, "rung again on first sight: a claim in flight would look the same"
    reaper.run_once()
    assert reaper.rerung == 10
    assert services.dispatcher.queued() == 200
    with services.engine.connect() as conn:
        rerung = set(conn.execute(select(INVOCATIONS.c.id).where(
            INVOCATIONS.c.id.in_(pks), INVOCATIONS.c.dispatched_at > utcnow() - timedelta(minutes=1))).scalars())
    assert rerung == set(lost)
    for _ in range(3):
        reaper.run_once()
    assert reaper.rerung == 10, "the re-rung doorbells are queued again and must not be rung a second time"


def test_sigterm_drains_a_short_attempt_finishes_a_long_one_is_handed_back_at_once(
        app_client: FlaskClient, private: tuple[dict[str, Any], Services], start_worker: Callable[..., Any],
        deploy: Callable[..., Any], wait_for_status: Callable[..., Any], eventually: Callable[..., Any],
        fn_name: str, tmp_path: Path) -> None:
    overrides, services = private
    slow = {**overrides, "lease_s": 60.0, "heartbeat_s": 1.0, "drain_s": 3.0}  # a lease wait would show
    # No retries: a handed-back attempt is not a failure and must not use up the budget.
    deploy(app_client, fn_name, "tests.handlers:counted", max_retries=0, timeout_s=120)
    draining = start_worker(concurrency=2, **slow)
    # Gates, not durations, so neither attempt can end before the test has sent SIGTERM however slow it is: the
    # short one goes on once its worker logs that the drain began (a short attempt caught by the drain), the long
    # one only once the test opens its gate, which it does after the second attempt was claimed.
    long_may_end = tmp_path / "long-may-end"
    short = services.submitter.submit(fn_name, {"gate": str(draining.log_path),
                                                "gate_text": "no new invocations taken"})
    long = services.submitter.submit(fn_name, {"gate": str(long_may_end)})
    wait_for_status(services, fn_name, short.invocation_id, {"Running"})
    first_long = wait_for_status(services, fn_name, long.invocation_id, {"Running"})
    assert first_long.attempts == 1
    draining.proc.send_signal(signal.SIGTERM)
    signalled = utcnow()
    start_worker(concurrency=1, **slow)
    done_short = wait_for_status(services, fn_name, short.invocation_id, {"Succeeded"}, timeout_s=20)
    assert done_short.attempts == 1
    # The second attempt's claim, not "Running": attempt 1 stays Running on the draining worker for the drain time,
    # so a wait for Running alone would most often return attempt 1's row.
    rerun = eventually(lambda: services.ledger.get_by_pk(long.pk), timeout_s=20,
                       until=lambda inv: inv is not None and inv.attempts == 2 and inv.status.value == "Running",
                       what=f"{fn_name}/{long.invocation_id}'s second attempt to be running")
    long_may_end.touch()
    done_long = wait_for_status(services, fn_name, long.invocation_id, {"Succeeded"}, timeout_s=30)
    assert done_long.attempts == 2
    # Started again on another worker: neither of the draining worker's processes.
    assert rerun.worker not in {done_short.worker, first_long.worker}, (rerun.worker, done_short.worker,
                                                                         first_long.worker)
    history = [(t.from_status and t.from_status.value, t.to_status.value, t.reason)
               for t in services.ledger.transitions(long.pk)]
    assert any(to == "Retrying" and "handed back" in reason for _, to, reason in history), history
    # Handed back after the 3 s drain and started again elsewhere at once: nowhere near the 60 s lease.
    assert (rerun.started_at - signalled).total_seconds() < 15
    eventually(lambda: draining.proc.poll() is not None, what="the drained worker to exit", timeout_s=20)
    assert "handed back to the ledger" in draining.log_path.read_text()
