"""Flows under the fault model (design §6): executions ride out a Postgres stop and a RabbitMQ stop with their engine
and worker running, every execution ends once and every step invocation is submitted once."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
from sqlalchemy import func, select

from taskservice.app import create_app
from taskservice.db import is_outage
from taskservice.ledger.flows import ExecutionFilter
from taskservice.ledger.models import FLOW_EVENTS, INVOCATIONS
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.chaos.servers import Postgres, RabbitMQ
    from tests.support import Backend, Launcher

pytestmark = pytest.mark.chaos
STEPS = 4


def test_flow_executions_ride_out_postgres_and_rabbitmq_stops(
        new_backend: Callable[..., Backend], launch: Launcher, deploy: Callable[..., Any],
        deploy_flow: Callable[..., Any], eventually: Callable[..., Any], postgres: Postgres, rabbitmq: RabbitMQ,
        fault_clock: list[tuple[str, float]]) -> None:
    # A lease longer than the outages: an outage shorter than the lease kills no running step (design §6). With the
    # suite's 3 s lease the workers fence themselves, and a flow step is retried only by its own retry rules.
    backend = new_backend("postgres", lease_s=30.0, heartbeat_s=2.0, reaper_interval_s=1.0)
    client = create_app(backend.settings).test_client()
    services = Services.build(backend.settings)
    try:
        deploy(client, "step", "tests.flow_handlers:double", max_retries=0)
        deploy_flow(client, "chain", {"version": "v1", "type": "flow", "steps": [
            {"name": f"s{k}", "type": "task", "resourceArn": "function:step"} for k in range(STEPS)]})
        worker = launch.worker(backend, 2)
        engine = launch.engine(backend)

        def noticed(proc: Any, mark: str, before: int) -> bool:
            """Whether `proc` has logged `mark` more often than the `before` times it had."""
            return proc.output(10**7).count(mark) > before

        for n in range(10):
            assert client.post("/v1/flows/chain/executions", json={"item": n, "seconds": 0.5},
                               headers={"X-Execution-Name": f"chaos-{n}"}).status_code == 202

        def steps_done() -> int:
            try:
                with services.engine.connect() as conn:
                    return int(conn.execute(select(func.count()).select_from(INVOCATIONS).where(
                        INVOCATIONS.c.status == "Succeeded", INVOCATIONS.c.execution_pk.is_not(None))).scalar_one())
            except Exception as exc:
                if is_outage(exc):
                    return -1
                raise

        eventually(steps_done, until=lambda done: done >= 5, what="the first steps to end")
        # Each outage lasts until the processes have met it (not a fixed time a slow machine could outrun).
        marks = {proc: proc.output(10**7).count("ledger unreachable") for proc in (worker, engine)}
        postgres.stop()
        fault_clock.append(("postgres stopped", time.monotonic()))
        for proc, before in marks.items():
            eventually(lambda proc=proc, before=before: noticed(proc, "ledger unreachable", before), timeout_s=60,
                       what=f"{proc.log_path.name} to meet the database outage")
        postgres.start()
        fault_clock.append(("postgres started", time.monotonic()))
        eventually(steps_done, until=lambda done: done >= 20, timeout_s=60, what="steps after the database came back")
        lost = worker.output(10**7).count("Connection to broker lost")
        rabbitmq.stop_app()
        fault_clock.append(("rabbitmq stopped", time.monotonic()))
        eventually(lambda: noticed(worker, "Connection to broker lost", lost), timeout_s=60,
                   what="the worker to meet the broker outage")
        rabbitmq.start_app()
        fault_clock.append(("rabbitmq started", time.monotonic()))

        def ended() -> list[Any]:
            items, _ = services.flows.list_executions(ExecutionFilter(flow="chain"), limit=100)
            return [e for e in items if e.status not in ("Running", "Stopping")]

        done = eventually(ended, until=lambda e: len(e) == 10, timeout_s=120, what="all 10 executions to end")
        assert {e.status for e in done} == {"Succeeded"}, [(e.name, e.status, e.error) for e in done]
        with services.engine.connect() as conn:
            for execution in done:
                assert execution.output["doubled"] == execution.input["item"] * 2
                submitted = conn.execute(select(func.count()).select_from(INVOCATIONS).where(
                    INVOCATIONS.c.execution_pk == execution.pk)).scalar()
                finals = conn.execute(select(func.count()).select_from(FLOW_EVENTS).where(
                    FLOW_EVENTS.c.execution_pk == execution.pk,
                    FLOW_EVENTS.c.type == "ExecutionSucceeded")).scalar()
                assert (submitted, finals) == (STEPS, 1), execution.name
    finally:
        services.close()
