"""Timer triggers and `taskservice scheduler`, on both backends: one invocation per tick with Function Compute's
timer event; two schedulers at once never fire a tick twice; a scheduler SIGKILLed and down for 10 s does not burst
afterwards; bad schedules are refused and write nothing."""
from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient

from taskservice.ledger.queries import InvocationFilter
from taskservice.ledger.records import Invocation
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import ServiceProcess, WorkerProcess


def _ticks(services: Services, fn: str) -> list[Invocation]:
    items = services.ledger.list_invocations(InvocationFilter(function=fn), limit=1000).items
    return sorted(items, key=lambda i: i.invocation_id)


def _at_least(services: Services, fn: str, count: int) -> list[Invocation] | None:
    ticks = _ticks(services, fn)
    return ticks if len(ticks) >= count else None


def _tick_time(inv: Invocation) -> datetime:
    return datetime.strptime(inv.invocation_id.rsplit("_", 1)[1], "%Y%m%dT%H%M%SZ").replace(tzinfo=timezone.utc)


def _logged_start(scheduler: ServiceProcess) -> datetime:
    """The time `taskservice scheduler` logged "scheduler started" (logging's asctime, local time, ms precision)."""
    found = re.search(r"^\[([0-9-]+ [0-9:]+,[0-9]+): INFO/scheduler\] scheduler started$",
                      scheduler.log_path.read_text(errors="replace"), re.MULTILINE)
    assert found, scheduler.output()
    return datetime.strptime(found[1], "%Y-%m-%d %H:%M:%S,%f").astimezone(timezone.utc)


def _put_timer(app_client: FlaskClient, name: str, fn: str, cron: str, payload: str = "") -> dict[str, Any]:
    answer = app_client.put(f"/v1/triggers/{name}", json={"kind": "timer", "function": fn, "cron": cron,
                                                          "payload": payload})
    assert answer.status_code == 201, answer.get_json()
    return answer.get_json()


def test_every_second_gives_one_invocation_per_tick_with_the_fc_timer_event(
        app_client: FlaskClient, services: Services, worker: WorkerProcess, fn_name: str,
        deploy_fn: Callable[..., Any], start_service: Callable[..., Any], eventually_true: Callable[..., Any],
        await_status: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    view = _put_timer(app_client, f"{fn_name}_t", fn_name, "@every 1s", payload="hello")
    assert view["kind"] == "timer" and view["status"]["nextFireTime"]
    start_service("scheduler")
    # At or after the scheduler's start (taken once its ready mark was seen): ticks due after it come from a running
    # scheduler. The test may take a while to read the clock, so it waits for such a tick rather than assuming one
    # of the first four is.
    running_since = datetime.now(timezone.utc)

    def ticks_with_one_on_time() -> list[Invocation] | None:
        ticks = _at_least(services, fn_name, 4)
        return ticks if ticks and any(_tick_time(i) > running_since for i in ticks) else None

    ticks = eventually_true(ticks_with_one_on_time, 20, "4 ticks, one due after the scheduler was running")
    times = [_tick_time(i) for i in ticks]
    assert all(b - a == timedelta(seconds=1) for a, b in zip(times, times[1:], strict=False)), times
    first = await_status(fn_name, ticks[0].invocation_id, {"Succeeded"})
    event = {"triggerTime": f"{times[0]:%Y-%m-%dT%H:%M:%SZ}", "triggerName": f"{fn_name}_t", "payload": "hello"}
    assert json.loads(first.payload) == event
    # fired at its time, never early; a tick that came due while the scheduler was starting is late but within the
    # 2 s grace, and the ones after that are on time (a few hundred ms on this shared 2-core machine)
    assert all(timedelta(0) <= i.created_at - _tick_time(i) < timedelta(seconds=2.5) for i in ticks), \
        [(i.invocation_id, i.created_at) for i in ticks]
    on_time = [i for i in ticks if _tick_time(i) > running_since]
    assert on_time and all(i.created_at - _tick_time(i) < timedelta(seconds=1.5) for i in on_time), \
        [(i.invocation_id, i.created_at) for i in on_time]
    shown = app_client.get(f"/v1/triggers/{fn_name}_t").get_json()["status"]
    assert shown["fired"] >= 4 and shown["lastFireTime"] and shown["nextFireTime"] > shown["lastFireTime"]


def test_two_schedulers_never_fire_a_tick_twice(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        start_service: Callable[..., Any], eventually_true: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    start_service("scheduler")
    start_service("scheduler")
    _put_timer(app_client, f"{fn_name}_t", fn_name, "@every 1s")  # both already running: no tick comes due unseen
    ticks = eventually_true(lambda: _at_least(services, fn_name, 6), 20, "6 ticks")
    times = [_tick_time(i) for i in ticks]
    assert len(set(times)) == len(times)  # the unique id makes it so; and no tick is missing between them
    assert times == [times[0] + timedelta(seconds=n) for n in range(len(times))]
    state = app_client.get(f"/v1/triggers/{fn_name}_t").get_json()["status"]
    assert state.get("missed", 0) == 0


def test_a_scheduler_down_for_ten_seconds_does_not_burst_afterwards(
        app_client: FlaskClient, services: Services, fn_name: str, deploy_fn: Callable[..., Any],
        start_service: Callable[..., Any], eventually_true: Callable[..., Any]) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    _put_timer(app_client, f"{fn_name}_t", fn_name, "@every 1s")
    first = start_service("scheduler")
    eventually_true(lambda: len(_ticks(services, fn_name)) >= 2, 20, "2 ticks")
    first.kill()  # SIGKILL: no chance to record anything
    killed_at = datetime.now(timezone.utc)
    time.sleep(10)  # the scenario itself: everything that fires timers is down for 10 s
    # When the restarted scheduler logged its start, just before its first pass: the test's own clock after it saw
    # that line would be late by however long the test took to look (ticks fired meanwhile would count as a burst,
    # or as replayed outage ticks).
    after_restart = _logged_start(start_service("scheduler"))
    assert timedelta(seconds=10) < after_restart - killed_at < timedelta(seconds=60)  # the log time read right

    # Which scheduler fired a tick is told by the tick's time, not by when the test looked: the first one fired each
    # tick at or after it was due, so its ticks are all due by `killed_at` (one whose commit landed after the kill
    # too), and the restarted one fires nothing due before `after_restart - 2 s` (its grace).
    def new_ticks() -> list[Invocation] | None:
        ticks = [i for i in _ticks(services, fn_name) if _tick_time(i) > killed_at]
        return ticks if len(ticks) >= 3 else None

    new = eventually_true(new_ticks, 20, "3 ticks after the restart")
    during = [i for i in new if _tick_time(i) < after_restart - timedelta(seconds=2.5)]
    assert during == [], [i.invocation_id for i in during]  # the ticks of the outage were not replayed
    # Created within 1 s of the start: at most the 2 ticks the first pass may fire late (its grace) and the next one.
    burst = [i for i in new if i.created_at - after_restart < timedelta(seconds=1)]
    assert len(burst) <= 3, [i.invocation_id for i in burst]
    state = app_client.get(f"/v1/triggers/{fn_name}_t").get_json()["status"]
    assert state["missed"] >= 7, state  # counted, not replayed


@pytest.mark.parametrize(("cron", "words"), [("61 * * * * *", "invalid cron"), ("@every 0s", "under 1 s"),
                                              ("CRON_TZ=Nowhere/City 0 * * * * *", "unknown time zone")])
def test_bad_timer_triggers_are_refused_and_write_nothing(
        app_client: FlaskClient, fn_name: str, deploy_fn: Callable[..., Any], cron: str, words: str) -> None:
    deploy_fn(fn_name, "workers.handlers.echo:handler")
    answer = app_client.put(f"/v1/triggers/{fn_name}_t", json={"kind": "timer", "function": fn_name, "cron": cron})
    assert answer.status_code == 422
    message = answer.get_json()["error"]["message"]
    assert "cron" in message and words in message
    assert app_client.get(f"/v1/triggers/{fn_name}_t").status_code == 404
    unknown = app_client.put(f"/v1/triggers/{fn_name}_t", json={"kind": "timer", "function": f"{fn_name}_no",
                                                                "cron": "@every 1s"})
    assert unknown.status_code == 404
    assert app_client.get(f"/v1/triggers/{fn_name}_t").status_code == 404
