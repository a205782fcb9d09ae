"""The lease keeper and watchdog that a process's attempts share: each attempt is still heartbeated and fenced on
its own, a heartbeat blocked on the ledger never holds up the fence, and a closed attempt gets no more writes.

The ledger side is a recorder (as in the sandbox tests): these are properties of the lease's threads, and the
integration and chaos tests run the same code against Postgres restarts and network partitions."""
from __future__ import annotations

import threading
import time
from typing import Any

from sqlalchemy.exc import OperationalError

from taskservice.ledger import Status
from tests.support import eventually
from workers.lease import AttemptLease


class RecordingLedger:
    """Answers heartbeats as the ledger would for a running attempt. Calls for `held_pk` wait until `release` is
    set (a ledger that stopped answering); `away` makes every call fail as an outage does."""

    def __init__(self) -> None:
        self.heartbeats: list[int] = []  # pk of each heartbeat, in order
        self.calls_after_close: list[int] = []
        self.closed: set[int] = set()
        self.held_pk: int | None = None
        self.release = threading.Event()
        self.waiting = threading.Event()  # a call for held_pk is waiting on `release`
        self.away = False

    def _call(self, pk: int) -> None:
        if pk in self.closed:
            self.calls_after_close.append(pk)
        if pk == self.held_pk:
            self.waiting.set()
            self.release.wait()
        if self.away:
            raise OperationalError("heartbeat", {}, Exception("connection refused"))

    def append_logs(self, pk: int, attempt: int, lines: list[Any]) -> None:
        self._call(pk)

    def heartbeat(self, pk: int, attempt: int, lease_s: float, *, progress: Any = None) -> Status:
        self._call(pk)
        self.heartbeats.append(pk)
        return Status.RUNNING

    def current_status(self, pk: int, attempt: int) -> Status:
        self._call(pk)
        return Status.RUNNING


def lease_for(ledger: RecordingLedger, pk: int, *, lease_s: float = 60.0, heartbeat_s: float = 0.1) -> AttemptLease:
    return AttemptLease(ledger, pk, 1, lease_s=lease_s, heartbeat_s=heartbeat_s,  # type: ignore[arg-type]
                        renewed_at=time.monotonic())


def lease_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name in ("lease-keeper", "lease-watchdog")]


def test_attempts_one_after_another_share_two_threads_and_each_is_heartbeated() -> None:
    ledger = RecordingLedger()
    serving: set[threading.Thread] = set()
    for pk in range(1, 51):
        lease = lease_for(ledger, pk)
        lease.start(on_fence=lambda: None)
        if pk == 1:
            serving = {t for t in lease_threads() if t.is_alive()}
        if pk % 10 == 0:  # every tenth lives long enough for heartbeats
            eventually(lambda pk=pk: ledger.heartbeats.count(pk) >= 2, what=f"two heartbeats of attempt {pk}")
        lease.close()
        ledger.closed.add(pk)
    assert len(serving) == 2
    assert {t for t in lease_threads() if t.is_alive()} == serving
    assert ledger.calls_after_close == []


def test_the_fence_fires_while_the_heartbeat_is_blocked_on_the_ledger() -> None:
    ledger = RecordingLedger()
    ledger.held_pk = 7
    fenced = threading.Event()
    lease = lease_for(ledger, 7, lease_s=2.0, heartbeat_s=0.05)
    lease.start(on_fence=fenced.set)
    try:
        eventually(ledger.waiting.is_set, what="the keeper's heartbeat waiting on the ledger")
        eventually(fenced.is_set, what="the watchdog fencing the attempt while its keeper is blocked")
        assert lease.fenced and lease.verdict() == "abandon"
    finally:
        ledger.release.set()
        lease.close()


def test_the_next_attempt_is_heartbeated_while_a_call_of_the_last_one_still_blocks() -> None:
    ledger = RecordingLedger()
    ledger.held_pk = 1
    first = lease_for(ledger, 1, heartbeat_s=0.05)
    first.start(on_fence=lambda: None)
    eventually(ledger.waiting.is_set, what="attempt 1's heartbeat waiting on the ledger")
    first.close()  # gives up waiting for that call after 1 s, as the worker moves on to its next doorbell
    second = lease_for(ledger, 2, heartbeat_s=0.05)
    second.start(on_fence=lambda: None)
    try:
        eventually(lambda: ledger.heartbeats.count(2) >= 2, what="heartbeats of attempt 2 while attempt 1's blocks")
        assert 1 not in ledger.heartbeats
    finally:
        ledger.release.set()
        second.close()
    keepers = [t for t in lease_threads() if t.name == "lease-keeper"]
    eventually(lambda: len([t for t in keepers if t.is_alive()]) == 1,
               what="the keeper stuck on attempt 1 ending once its call returned")


def test_an_outage_is_retried_and_the_next_attempt_is_served_after_it() -> None:
    ledger = RecordingLedger()
    ledger.away = True
    first = lease_for(ledger, 1, heartbeat_s=0.05)
    first.start(on_fence=lambda: None)
    eventually(lambda: first._failures >= 2, what="two failed heartbeats of attempt 1")
    ledger.away = False
    eventually(lambda: 1 in ledger.heartbeats, what="a heartbeat of attempt 1 once the ledger is back")
    first.close()
    second = lease_for(ledger, 2, heartbeat_s=0.05)
    second.start(on_fence=lambda: None)
    eventually(lambda: 2 in ledger.heartbeats, what="a heartbeat of attempt 2 from the same keeper")
    second.close()
    assert not first.fenced and not second.fenced


def test_a_lost_attempt_is_no_longer_ticked_but_the_threads_go_on() -> None:
    ledger = RecordingLedger()
    lost = lease_for(ledger, 1, heartbeat_s=0.05)
    lost.lost = True  # as when the ledger says another attempt took over
    lost.start(on_fence=lambda: None)
    live = lease_for(ledger, 2, heartbeat_s=0.05)
    live.start(on_fence=lambda: None)
    eventually(lambda: ledger.heartbeats.count(2) >= 2, what="heartbeats of the live attempt")
    assert 1 not in ledger.heartbeats
    lost.close()
    live.close()
