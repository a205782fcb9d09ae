"""The timer scheduler (`taskservice scheduler`): fires the due ticks of every enabled timer trigger as invocations.

Safe to run several at once and to kill at any moment, because nothing here is the record of a tick but the
ledger: a tick's invocation id is derived from the trigger and the scheduled time (`timer_<trigger>_<UTC tick>`),
so two schedulers firing the same tick make one invocation (the second gets DuplicateInvocation), and a scheduler
killed between firing and recording simply fires again into the same id.

Each trigger's state remembers the last tick handled (`lastTick`). A tick whose time passed more than
`grace_s` ago when a scheduler first sees it — everything was down, or the scheduler was stopped — is skipped and
counted (`missed`), never replayed in a burst: after an outage the schedule picks up at the current tick. A
scheduler that is running but slow (a loaded machine) is not "down": it fires every tick since its own last pass,
late, up to MAX_STALL_S back. The
state moves forward by compare-and-swap, so concurrent schedulers never count a step twice.
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime, timedelta

from taskservice.clock import utcnow
from taskservice.errors import DuplicateInvocation, FunctionNotFound
from taskservice.ledger.triggers import Trigger
from taskservice.services import Services
from taskservice.trigger_specs import Schedule, TimerConfig, timer_event, timer_invocation_id

log = logging.getLogger(__name__)
#: How late a tick may be fired. Later than this it is counted as missed instead (no burst after an outage).
MISFIRE_GRACE_S = 2.0
#: How often the trigger table is read again when no tick is due sooner (new, changed or deleted timers).
REFRESH_S = 1.0
#: A running scheduler that stalls (a loaded machine, a slow ledger) still fires the ticks since its last pass, up to
#: this far back; only a scheduler that was not running (or a stall longer than this) skips them.
MAX_STALL_S = 30.0
#: Missed ticks counted one by one up to this many per pass (a cron that fires every second and was down a week).
MISSED_COUNT_LIMIT = 100_000


def _parse_time(value: object) -> datetime | None:
    return datetime.fromisoformat(value) if isinstance(value, str) and value else None


class Scheduler:
    def __init__(self, services: Services, *, grace_s: float = MISFIRE_GRACE_S, refresh_s: float = REFRESH_S
                 ) -> None:
        self.services = services
        self.grace = timedelta(seconds=grace_s)
        self.refresh = timedelta(seconds=refresh_s)
        self.stop = threading.Event()
        self.fired = 0  # ticks this process submitted (duplicates of another scheduler's not counted)
        self._last_pass: datetime | None = None  # when this process last looked at every timer successfully

    def run_forever(self) -> None:
        log.info("scheduler started")
        while not self.stop.is_set():
            try:
                wait_s = self.run_once()
            except Exception:  # the ledger is away, most likely: try again shortly, nothing is lost but time
                log.exception("scheduler pass failed; trying again")
                wait_s = 1.0
            self.stop.wait(wait_s)
        log.info("scheduler stopped")

    def run_once(self) -> float:
        """Fire every due tick once; returns how long to sleep until the next tick (or the next refresh)."""
        now = utcnow()
        soonest = now + self.refresh
        horizon = now - self.grace  # ticks at or before this are missed, not fired
        if self._last_pass is not None:  # running all along: what came due since the last pass is late, not missed
            horizon = max(min(horizon, self._last_pass - self.grace), now - timedelta(seconds=MAX_STALL_S))
        for trigger in self.services.triggers.list(enabled_only=True, kind="timer"):
            try:
                soonest = min(soonest, self._advance(trigger, now, horizon))
            except Exception as exc:
                log.warning("timer %s: pass failed (%s: %s); trying again", trigger.name, type(exc).__name__, exc)
        self._last_pass = now
        return max(0.0, (soonest - utcnow()).total_seconds())

    def _advance(self, trigger: Trigger, now: datetime, horizon: datetime) -> datetime:
        spec = trigger.spec()
        assert isinstance(spec, TimerConfig)
        schedule = spec.schedule
        # Ticks before the trigger was last put (created, changed, re-enabled) are neither fired nor missed.
        last = _parse_time(trigger.state.get("lastTick"))
        cursor = trigger.updated_at if last is None else max(last, trigger.updated_at)
        missed, last_missed = self._missed(schedule, cursor, horizon)
        due = list(schedule.ticks(max(cursor, horizon), now, limit=1000))
        for tick in due:
            self._fire(trigger, spec, tick)
        new_cursor = due[-1] if due else (last_missed or cursor)
        if new_cursor > cursor:
            state = dict(trigger.state)
            state["lastTick"] = new_cursor.isoformat()
            state["missed"] = int(state.get("missed", 0)) + missed
            state["fired"] = int(state.get("fired", 0)) + len(due)
            if due:
                state["lastFireTime"] = due[-1].isoformat()
            if missed:
                log.warning("timer %s: skipped %d tick(s) missed while no scheduler ran (last %s)", trigger.name,
                            missed, last_missed)
            self.services.triggers.swap_state(trigger.name, trigger.state_text, state)
        return schedule.next_after(max(now, new_cursor))

    @staticmethod
    def _missed(schedule: Schedule, cursor: datetime, horizon: datetime) -> tuple[int, datetime | None]:
        """Ticks in (cursor, horizon]: too late to fire. Counted arithmetically for @every, else one by one."""
        if horizon <= cursor:
            return 0, None
        if schedule.every_s is not None:
            period = schedule.every_s
            first, last = int(cursor.timestamp() // period), int(horizon.timestamp() // period)
            if last <= first:
                return 0, None
            return last - first, datetime.fromtimestamp(last * period, cursor.tzinfo)
        count, last_tick = 0, None
        for tick in schedule.ticks(cursor, horizon, limit=MISSED_COUNT_LIMIT):
            count, last_tick = count + 1, tick
        return count, last_tick

    def _fire(self, trigger: Trigger, spec: TimerConfig, tick: datetime) -> int:
        try:
            self.services.submitter.submit(spec.function, timer_event(trigger.name, tick, spec.payload),
                                           invocation_id=timer_invocation_id(trigger.name, tick))
        except DuplicateInvocation:
            return 0  # another scheduler fired this tick first (or this one before a crash)
        except FunctionNotFound:
            log.warning("timer %s: function %s does not exist; tick %s skipped", trigger.name, spec.function, tick)
            return 0
        self.fired += 1
        return 1
