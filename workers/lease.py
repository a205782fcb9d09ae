"""One attempt's lease, kept alive from threads of its own so that a slow or unreachable ledger never stalls (or
kills) the handler — and fenced, so that an attempt that lost the ledger for too long dies before another may start.

The arithmetic (design §6, README "Fault tolerance"): a heartbeat that starts at local time t writes
`lease_expires_at = t + lease_s`; the reaper may hand the invocation to a new attempt only after that. The watchdog
kills the handler's process tree once `lease_s - margin` has passed since the start of the last heartbeat that
succeeded, with `margin = max(1 s, lease_s / 5)` (at most half the lease): the margin covers the kill itself (the
watchdog looks every 50 ms), the new attempt's own start-up and clock skew between worker and reaper hosts, which
must stay well below it (NTP). Between outage and fence, logs and progress wait in a bounded buffer and heartbeats
are retried with backoff, so an outage shorter than that passes without anyone noticing but the operator's log.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime

from taskservice.backoff import backoff_delay
from taskservice.clock import utcnow
from taskservice.db import is_outage
from taskservice.ledger import Ledger, Status

log = logging.getLogger(__name__)

FLUSH_EVERY_S = 0.5
STOP_CHECK_S = 0.5  # a stop request reaches a running handler within about this long
WATCH_EVERY_S = 0.05
MAX_BUFFERED_LINES = 20_000  # per attempt while the ledger is away; beyond, lines are counted and dropped
RETRY_BASE_S, RETRY_MAX_S = 0.25, 1.0


def fence_margin(lease_s: float) -> float:
    return min(lease_s / 2, max(1.0, lease_s / 5))


class AttemptLease:
    """Heartbeats, log/progress flushes and stop checks of one running attempt, plus its fencing watchdog."""

    def __init__(self, ledger: Ledger, pk: int, attempt: int, *, lease_s: float, heartbeat_s: float,
                 renewed_at: float, max_log_lines: int = MAX_BUFFERED_LINES) -> None:
        self.ledger, self.pk, self.attempt = ledger, pk, attempt
        self.lease_s, self.heartbeat_s = lease_s, heartbeat_s
        self.fence_after_s = lease_s - fence_margin(lease_s)
        self.max_log_lines = max_log_lines
        self.renewed_at = renewed_at  # monotonic start of the last write that extended the lease (or the claim)
        self.status: Status | None = Status.RUNNING
        self.lost = False  # the ledger says this attempt is no longer current: its lease was taken over
        self.fenced = False
        self._logs: list[tuple[datetime, str, str]] = []
        self._dropped = 0
        self._progress: tuple[float, str] | None = None
        self._buffer_lock = threading.Lock()
        self._write_lock = threading.Lock()  # one flush at a time: the keeper's and the final one
        self._closed = threading.Event()
        self._on_fence: Callable[[], None] = lambda: None
        self._outage_since: float | None = None
        self._threads: list[threading.Thread] = []

    # --- fed by the supervision loop --------------------------------------------------------------------------------
    def add_log(self, at: datetime, level: str, message: str) -> None:
        with self._buffer_lock:
            if len(self._logs) < self.max_log_lines:
                self._logs.append((at, level, message))
            else:
                self._dropped += 1

    def set_progress(self, percent: float, message: str) -> None:
        with self._buffer_lock:
            self._progress = (percent, message)

    def start(self, on_fence: Callable[[], None]) -> None:
        """Begin heartbeating and watching; `on_fence` kills the handler's process tree."""
        self._on_fence = on_fence
        for target, name in ((self._keep, "lease-keeper"), (self._watch, "lease-watchdog")):
            thread = threading.Thread(target=target, name=f"{name}-{self.pk}", daemon=True)
            thread.start()
            self._threads.append(thread)

    def verdict(self) -> str | None:
        """What the supervision loop should do now: "abandon" (fenced or taken over), "stop", or nothing."""
        if self.lost or self.fenced:
            return "abandon"
        return "stop" if self.status is Status.STOPPING else None

    @property
    def may_write(self) -> bool:
        """Whether this attempt may still write its outcome: not fenced, not taken over, lease not about to lapse."""
        return not (self.lost or self.fenced) and time.monotonic() - self.renewed_at < self.fence_after_s

    def close(self) -> None:
        self._closed.set()
        for thread in self._threads:
            if thread is not threading.current_thread():
                thread.join(timeout=1.0)

    # --- writes -----------------------------------------------------------------------------------------------------
    def flush(self, *, heartbeat: bool) -> None:
        """Write buffered logs (and progress, with a heartbeat when asked). Raises on an outage, keeping the buffer."""
        with self._write_lock:
            with self._buffer_lock:
                lines, dropped, progress = list(self._logs), self._dropped, self._progress
            if dropped:
                lines = [*lines, (utcnow(), "WARNING", f"[taskservice] {dropped} log line(s) dropped while the "
                                                       "ledger was unreachable")]
            started = time.monotonic()
            self.ledger.append_logs(self.pk, self.attempt, lines)
            with self._buffer_lock:
                del self._logs[:len(lines) - (1 if dropped else 0)]
                self._dropped -= dropped
            if heartbeat:
                status = self.ledger.heartbeat(self.pk, self.attempt, self.lease_s, progress=progress)
                self._renewed(started, status)
                with self._buffer_lock:
                    if self._progress is progress:
                        self._progress = None

    def _renewed(self, started: float, status: Status | None) -> None:
        if status is None:
            self.lost = True
            return
        self.status = status
        self.renewed_at = max(self.renewed_at, started)
        if self._outage_since is not None:
            log.warning("invocation %s: ledger reachable again after %.1fs; attempt %d kept running", self.pk,
                        time.monotonic() - self._outage_since, self.attempt)
            self._outage_since = None

    def _keep(self) -> None:
        last_flush = last_beat = last_check = time.monotonic()
        failures = 0
        wait = 0.05
        while not self._closed.wait(wait):
            now = time.monotonic()
            pending = bool(self._logs) or self._progress is not None
            try:
                if failures or now - last_beat >= self.heartbeat_s or (pending and now - last_flush >= FLUSH_EVERY_S):
                    self.flush(heartbeat=True)
                    last_flush = last_beat = last_check = now
                elif now - last_check >= STOP_CHECK_S:
                    self.status = self.ledger.current_status(self.pk, self.attempt)
                    self.lost = self.status not in (Status.RUNNING, Status.STOPPING)
                    last_check = now
                failures, wait = 0, 0.05
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("invocation %s: heartbeat failed", self.pk)
                elif self._outage_since is None:
                    self._outage_since = now
                    log.warning("invocation %s: ledger unreachable (%s); attempt %d keeps running, heartbeats and "
                                "logs are retried; fenced in %.1fs unless it comes back", self.pk,
                                type(exc).__name__, self.attempt, self.fence_after_s - (now - self.renewed_at))
                failures += 1
                wait = backoff_delay(failures, RETRY_BASE_S, RETRY_MAX_S)
            if self.lost or self.fenced:
                return

    def _watch(self) -> None:
        while not self._closed.wait(WATCH_EVERY_S):
            if self.lost:
                return
            if time.monotonic() - self.renewed_at >= self.fence_after_s:
                self.fenced = True
                log.error("invocation %s: no contact with the ledger for %.1fs (lease %.1fs): killing attempt %d "
                          "before its lease lapses (self-fencing); the reaper hands it to a new attempt",
                          self.pk, self.fence_after_s, self.lease_s, self.attempt)
                self._on_fence()
                return
