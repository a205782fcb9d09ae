"""One attempt's lease, kept alive from threads apart from the supervision loop (the process's lease keeper and
watchdog, see _Ticker) so that a slow or unreachable ledger never stalls (or kills) the handler — and fenced, so that
an attempt that lost the ledger for too long dies before another may start.

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
import math
import os
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
KEEP_EVERY_S = 0.05  # how often the keeper looks whether a heartbeat, flush or stop check is due
MAX_BUFFERED_LINES = 20_000  # per attempt while the ledger is away; beyond, lines are counted and dropped
RETRY_BASE_S, RETRY_MAX_S = 0.25, 1.0


def fence_margin(lease_s: float) -> float:
    return min(lease_s / 2, max(1.0, lease_s / 5))


class _Ticker:
    """One long-lived daemon thread that calls `tick(lease)` for every lease registered with it whenever that lease
    is due; `tick` returns the delay until its next call, or None when the lease needs no more.

    A thread per attempt cost more than a no-op attempt itself (start and join: 2.1 ms of wall time and 0.37 ms of
    CPU per attempt, measured), and a pool process runs one attempt at a time, so one keeper and one watchdog per
    process serve all its attempts. They stay two threads: the watchdog must fire while a heartbeat is blocked on an
    unreachable ledger."""

    def __init__(self, name: str, tick: Callable[[AttemptLease], float | None]) -> None:
        self._tick = tick
        self._due: dict[AttemptLease, float] = {}  # lease -> monotonic time of its next tick
        self._busy: AttemptLease | None = None  # the lease being ticked right now
        self._retired = False
        self._wake_at = math.inf  # when the thread's current wait ends (monotonic); inf: it waits to be notified
        self._cond = threading.Condition()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def add(self, lease: AttemptLease, first_in_s: float) -> None:
        with self._cond:
            due = self._due[lease] = time.monotonic() + first_in_s
            if due < self._wake_at:  # else the thread wakes in time anyway: no context switch per attempt
                self._cond.notify_all()

    def discard(self, lease: AttemptLease, *, wait_s: float) -> bool:
        """No more ticks for `lease`. Waits up to `wait_s` for one in progress to end; False if it is still running
        then (a heartbeat blocked on an unreachable ledger): the caller retires this ticker for a fresh one, so the
        next attempt's heartbeats do not queue behind a call of an attempt that is over."""
        deadline = time.monotonic() + wait_s
        with self._cond:
            self._due.pop(lease, None)
            if threading.current_thread() is self._thread:
                return True
            while self._busy is lease and (remaining := deadline - time.monotonic()) > 0:
                self._cond.wait(remaining)
            return self._busy is not lease

    def retire(self) -> None:
        """End the thread once its tick in progress returns; leases still registered get no more ticks here."""
        with self._cond:
            self._retired = True
            self._cond.notify_all()

    def _next(self) -> AttemptLease | None:
        with self._cond:
            while True:
                if self._retired:
                    return None
                if not self._due:
                    self._wake_at = math.inf
                    self._cond.wait()
                    continue
                lease, at = min(self._due.items(), key=lambda item: item[1])
                remaining = at - time.monotonic()
                if remaining <= 0:
                    self._wake_at = -math.inf  # ticking: it looks at every due time again afterwards, so no notify
                    self._busy = lease
                    return lease
                self._wake_at = at
                self._cond.wait(remaining)

    def _run(self) -> None:
        while (lease := self._next()) is not None:
            delay: float | None = None
            try:
                delay = self._tick(lease)
            except Exception:  # a bug in one lease's tick must not end the thread every later attempt relies on
                log.exception("invocation %s: lease %s failed", lease.pk, self._thread.name)
            finally:
                with self._cond:
                    self._busy = None
                    if lease in self._due:  # not discarded while it ran
                        if delay is None:
                            del self._due[lease]
                        else:
                            self._due[lease] = time.monotonic() + delay
                    self._cond.notify_all()


class _ProcessTickers:
    """This process's keeper and watchdog, started on first use. A forked child (a pool process, a zygote) inherits
    the objects but not the threads, so it starts its own."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._made: tuple[_Ticker, _Ticker] | None = None
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()  # it may have been held by another thread of the parent at the fork
        self._made = None

    def get(self) -> tuple[_Ticker, _Ticker]:
        with self._lock:
            if self._made is None:
                self._made = (_Ticker("lease-keeper", AttemptLease.keep_once),
                              _Ticker("lease-watchdog", AttemptLease.watch_once))
            return self._made

    def replace(self, stuck: _Ticker) -> None:
        """Retire `stuck` (its tick of an attempt that is over still blocks) and start a fresh one in its place."""
        stuck.retire()
        with self._lock:
            if self._made is not None and stuck in self._made:
                keeper, watchdog = self._made
                self._made = ((_Ticker("lease-keeper", AttemptLease.keep_once), watchdog) if stuck is keeper
                              else (keeper, _Ticker("lease-watchdog", AttemptLease.watch_once)))


_TICKERS = _ProcessTickers()


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
        self._tickers: tuple[_Ticker, ...] = ()  # this process's keeper and watchdog, once started
        self._last_flush = self._last_beat = self._last_check = 0.0  # monotonic, set by start()
        self._failures = 0  # heartbeats failed in a row

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
        self._last_flush = self._last_beat = self._last_check = time.monotonic()
        keeper, watchdog = _TICKERS.get()
        keeper.add(self, KEEP_EVERY_S)
        watchdog.add(self, WATCH_EVERY_S)
        self._tickers = (keeper, watchdog)

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
        for ticker in self._tickers:
            if not ticker.discard(self, wait_s=1.0):
                _TICKERS.replace(ticker)

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

    def keep_once(self) -> float | None:
        """One turn of the keeper: heartbeat, flush or stop check as due. Returns the delay to the next turn, None
        once the attempt is closed, lost or fenced."""
        if self._closed.is_set() or self.lost or self.fenced:
            return None
        now = time.monotonic()
        pending = bool(self._logs) or self._progress is not None
        wait = KEEP_EVERY_S
        try:
            if (self._failures or now - self._last_beat >= self.heartbeat_s
                    or (pending and now - self._last_flush >= FLUSH_EVERY_S)):
                self.flush(heartbeat=True)
                self._last_flush = self._last_beat = self._last_check = now
            elif now - self._last_check >= STOP_CHECK_S:
                self.status = self.ledger.current_status(self.pk, self.attempt)
                self.lost = self.status not in (Status.RUNNING, Status.STOPPING)
                self._last_check = now
            self._failures = 0
        except Exception as exc:
            if not is_outage(exc):
                log.exception("invocation %s: heartbeat failed", self.pk)
            elif self._outage_since is None:
                self._outage_since = now
                log.warning("invocation %s: ledger unreachable (%s); attempt %d keeps running, heartbeats and "
                            "logs are retried; fenced in %.1fs unless it comes back", self.pk,
                            type(exc).__name__, self.attempt, self.fence_after_s - (now - self.renewed_at))
            self._failures += 1
            wait = backoff_delay(self._failures, RETRY_BASE_S, RETRY_MAX_S)
        return None if self.lost or self.fenced else wait

    def watch_once(self) -> float | None:
        """One look of the watchdog; None once the attempt is closed, lost or fenced."""
        if self._closed.is_set() or self.lost:
            return None
        if time.monotonic() - self.renewed_at >= self.fence_after_s:
            self.fenced = True
            log.error("invocation %s: no contact with the ledger for %.1fs (lease %.1fs): killing attempt %d "
                      "before its lease lapses (self-fencing); the reaper hands it to a new attempt",
                      self.pk, self.fence_after_s, self.lease_s, self.attempt)
            self._on_fence()
            return None
        return WATCH_EVERY_S
