"""The engine's promises under load and faults: fan-out never deadlocks a small pool, a SIGKILLed engine loses and
doubles nothing, and a wait step is a durable timer that outlives the engine that started it."""
from __future__ import annotations

import contextlib
import json
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient
from sqlalchemy import func, select, text

from taskservice.ledger.models import FLOW_EVENTS, INVOCATIONS
from taskservice.services import Services
from tests.support import backends_running, lock_holder

if TYPE_CHECKING:
    from tests.support import OwnStack

_FOREACH = """
version: v1
type: flow
steps:
  - name: each
    type: foreach
    maxConcurrency: 2
    iterationMapping: {{collection: $.items, item: item}}
    steps:
      - name: work
        type: task
        resourceArn: function:{function}
        inputMappings:
          - {{target: item, source: $input.item}}
          - {{target: log, source: $input.log}}
          - {{target: seconds, source: {seconds}}}
  - name: total
    type: pass
"""


@pytest.fixture
def flow_name() -> str:
    return f"flow_{uuid.uuid4().hex[:10]}"


def _ended(client: FlaskClient, flow: str) -> dict[str, str]:
    items = client.get(f"/v1/executions?flow={flow}&limit=1000").get_json()["items"]
    return {e["executionName"]: e["status"] for e in items if e["status"] not in ("Running", "Stopping")}


@pytest.mark.usefixtures("shared_worker", "shared_engine")
def test_twenty_fanouts_at_once_on_a_two_slot_worker_all_finish(
        app_client: FlaskClient, deploy: Any, deploy_flow: Any, start_execution: Any,
        eventually: Any, flow_name: str, fn_name: str, tmp_path: Path) -> None:
    """The slot-holding parents of the old fan-out deadlocked here: no execution holds a slot while it waits."""
    deploy(app_client, fn_name, "tests.flow_handlers:double", max_retries=0)
    deploy_flow(app_client, flow_name, _FOREACH.format(function=fn_name, seconds=0.05))
    logs = {}
    for n in range(20):
        logs[n] = tmp_path / f"runs-{n}.jsonl"
        start_execution(app_client, flow_name, {"items": [1, 2, 3, 4], "log": str(logs[n])}, name=f"fan-{n}")
    ended = eventually(lambda: _ended(app_client, flow_name), until=lambda e: len(e) == 20, timeout_s=180,
                       what="all 20 executions to end")
    assert set(ended.values()) == {"Succeeded"}
    for log in logs.values():
        runs = [json.loads(line) for line in log.read_text().splitlines()]
        assert sorted(r["item"] for r in runs) == [1, 2, 3, 4]
        for run in runs:  # maxConcurrency 2 per execution, by the handlers' own clocks
            assert sum(1 for o in runs if o["start"] < run["end"] and run["start"] < o["end"]) <= 2


KILLS = 5


@contextlib.contextmanager
def _engine_waiting_inside_an_advance(services: Services, eventually: Any) -> Iterator[None]:
    """Hold a SHARE lock on flow_events until the engine's advance waits for it: only an advance writes history
    (add_events), after it locked an execution, took its wake-ups and decided its step invocations, so the engine is
    then certainly inside an advance's transaction with nothing of it committed. Workers never write flow_events."""
    with lock_holder(services.engine) as blocker:
        blocker.execute(text(f"LOCK TABLE {FLOW_EVENTS.name} IN SHARE MODE"))
        eventually(lambda: backends_running(services.engine, f"INSERT INTO {FLOW_EVENTS.name}%",
                                            waiting_for_a_lock=True), timeout_s=60,
                   what="an advance to wait to write its history")
        yield


def test_sigkilled_engines_lose_and_double_nothing(
        own_stack: OwnStack, deploy: Any, deploy_flow: Any, start_execution: Any, eventually: Any, flow_name: str,
        fn_name: str, tmp_path: Path) -> None:
    """KILLS SIGKILLs of the engine while 50 executions run, by construction; on Postgres each lands while an advance
    waits inside its transaction (for a lock the test holds), so the kill is certainly mid-advance."""
    app_client, services, start_engine = own_stack.client, own_stack.services, own_stack.engine
    deploy(app_client, fn_name, "tests.flow_handlers:double", max_retries=0)
    deploy_flow(app_client, flow_name, _FOREACH.format(function=fn_name, seconds=0.1))
    for n in range(50):
        start_execution(app_client, flow_name, {"items": [1, 2, 3], "log": str(tmp_path / f"runs-{n}.jsonl")},
                        name=f"kill-{n}")
    def steps_done() -> int:
        with services.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(INVOCATIONS).where(
                INVOCATIONS.c.execution_pk.is_not(None), INVOCATIONS.c.status == "Succeeded")).scalar_one())

    engine = start_engine()
    for kill in range(KILLS):  # exactly KILLS SIGKILLs, each after ten more steps ended
        eventually(steps_done, until=lambda done, goal=10 * (kill + 1): done >= goal, timeout_s=120,
                   what=f"progress past {10 * (kill + 1)} ended steps")
        if own_stack.backend.name == "postgres":
            with _engine_waiting_inside_an_advance(services, eventually):
                engine.kill()  # mid-transaction: the execution locked, its wake-ups taken, its decisions unwritten
        else:
            engine.kill()  # SQLite takes its write lock up front (BEGIN IMMEDIATE): no lock stops an advance half-way
        engine = start_engine()
    ended = eventually(lambda: _ended(app_client, flow_name), until=lambda e: len(e) == 50, timeout_s=120,
                       what="all 50 executions to end")
    assert set(ended.values()) == {"Succeeded"}
    executions = {e.name: e for e in services.flows.list_executions(_only(flow_name), limit=100)[0]}
    with services.engine.connect() as conn:
        for name, execution in executions.items():
            finals = conn.execute(select(func.count()).select_from(FLOW_EVENTS).where(
                FLOW_EVENTS.c.execution_pk == execution.pk, FLOW_EVENTS.c.type == "ExecutionSucceeded")).scalar()
            assert finals == 1, name
            submitted = conn.execute(select(func.count()).select_from(INVOCATIONS).where(
                INVOCATIONS.c.execution_pk == execution.pk)).scalar()
            assert submitted == 3, name  # one invocation per iteration's task step, none doubled
            assert [it["doubled"] for it in execution.output["each"]] == [2, 4, 6]
    runs: Counter[tuple[int, int]] = Counter()
    for n in range(50):
        for line in (tmp_path / f"runs-{n}.jsonl").read_text().splitlines():
            runs[(n, json.loads(line)["item"])] += 1
    assert set(runs.values()) == {1} and len(runs) == 150


def test_a_wait_outlives_the_engine_that_started_it(
        own_stack: OwnStack, deploy_flow: Any, start_execution: Any, wait_for_execution: Any, eventually: Any,
        flow_name: str) -> None:
    app_client, start_engine = own_stack.client, own_stack.engine
    deploy_flow(app_client, flow_name, {"version": "v1", "type": "flow", "steps": [
        {"name": "pause", "type": "wait", "duration": 3}, {"name": "after", "type": "pass"}]})
    first = start_engine()
    name = start_execution(app_client, flow_name, {})
    history = f"/v1/flows/{flow_name}/executions/{name}/history"
    eventually(lambda: [e["type"] for e in app_client.get(history).get_json()["items"]],
               until=lambda types: "WaitStarted" in types, what="the wait to start")
    first.kill()
    start_engine()
    done = wait_for_execution(app_client, flow_name, name, {"Succeeded", "Failed"})
    assert done["status"] == "Succeeded"
    events = {e["type"]: e for e in app_client.get(history).get_json()["items"]}
    waited = datetime.fromisoformat(events["WaitEnded"]["at"]) - datetime.fromisoformat(events["WaitStarted"]["at"])
    assert waited.total_seconds() >= 3


def _only(flow: str) -> Any:
    from taskservice.ledger.flows import ExecutionFilter

    return ExecutionFilter(flow=flow)
