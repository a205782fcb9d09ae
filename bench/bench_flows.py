"""Orchestration overhead of flows on Postgres + RabbitMQ, beside plain invocations on the same worker in the same run.
Nothing is asserted. `make bench-flows` (BENCH_ARGS=--quick for a short run).

- plain: N no-op invocations submitted at once; wall = first submitted → last finished.
- foreach: one execution of a foreach over N no-op items with maxConcurrency 50; wall = started → finished. Per
  step: each step invocation's end → the submission of the next one the engine starts (the step it frees room for).
- chain: an execution of 50 no-op task steps one after another; step-to-step latency = step k submitted − step k−1
  ended, which is the engine's whole share: wake-up, advance, submit.
The worker (2 slots) and one `taskservice engine` run as separate processes, as in production.
"""
from __future__ import annotations

import argparse
import sys
import time
import uuid
from collections.abc import Callable
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from sqlalchemy import select

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from bench.bench_events import pct, start, stop  # noqa: E402
from bench.fresh_run import fresh_run  # noqa: E402
from bench.machine import background_load, describe_machine  # noqa: E402
from taskservice.flowdef import parse_definition  # noqa: E402
from taskservice.ledger.models import INVOCATIONS  # noqa: E402
from taskservice.services import Services  # noqa: E402
from taskservice.specs import FunctionConfig  # noqa: E402

NOOP = "noop"
EPOCH = datetime(2000, 1, 1, tzinfo=timezone.utc)


def wait_until(probe: Callable[[], object], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not probe():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out waiting for {what}")
        time.sleep(0.05)


def _invocations(services: Services, *, execution_pk: int | None, since: datetime) -> list[tuple[datetime, datetime]]:
    query = select(INVOCATIONS.c.created_at, INVOCATIONS.c.finished_at).where(INVOCATIONS.c.function == NOOP,
                                                                              INVOCATIONS.c.created_at >= since)
    query = query.where(INVOCATIONS.c.execution_pk.is_(None) if execution_pk is None
                        else INVOCATIONS.c.execution_pk == execution_pk)
    with services.engine.connect() as conn:
        return [(r.created_at, r.finished_at) for r in conn.execute(query.order_by(INVOCATIONS.c.id))]


def plain_phase(services: Services, n: int) -> float:
    since = datetime.now(timezone.utc)
    for _ in range(n):
        services.submitter.submit(NOOP, {})
    wait_until(lambda: sum(1 for _, f in _invocations(services, execution_pk=None, since=since) if f) >= n, 600,
               "the plain invocations")
    rows = _invocations(services, execution_pk=None, since=since)
    wall = (max(f for _, f in rows) - min(c for c, _ in rows)).total_seconds()
    print(f"plain    {n} no-op invocations: {wall:.1f} s wall, {n / wall:.0f}/s", flush=True)
    return wall


def run_flow(services: Services, name: str, definition: dict[str, Any], payload: str) -> tuple[int, float]:
    parsed = parse_definition(definition)
    flow, _ = services.flows.put(name, source="", definition=parsed.to_json(), description="", on_success=None,
                                 on_failure=None)
    execution = services.flows.start(flow, f"run-{uuid.uuid4().hex[:8]}", payload, first_step=parsed.steps[0].name,
                                     timeout_s=None)

    def ended() -> bool:
        return services.flows.get_execution_by_pk(execution.pk).status not in ("Running", "Stopping")

    wait_until(ended, 1200, f"the {name} execution")
    done = services.flows.get_execution_by_pk(execution.pk)
    if done.status != "Succeeded":
        raise RuntimeError(f"{name} ended {done.status}: {done.error}")
    assert done.finished_at is not None
    return execution.pk, (done.finished_at - done.started_at).total_seconds()


def foreach_phase(services: Services, n: int, plain_wall: float) -> None:
    definition: dict[str, Any] = {"version": "v1", "type": "flow", "steps": [{
        "name": "each", "type": "foreach", "maxConcurrency": 50, "iterationMapping": {"collection": "$.items"},
        "steps": [{"name": "work", "type": "task", "resourceArn": f"function:{NOOP}",
                   "inputMappings": [{"target": "item", "source": "$input.item"}]}]}]}
    pk, wall = run_flow(services, "bench-foreach", definition, f'{{"items": {list(range(n))}}}')
    rows = _invocations(services, execution_pk=pk, since=EPOCH)
    created = sorted(c for c, _ in rows)
    gaps = []
    for _, finished in rows:  # an ended step frees a place: the next submission after it is the one it allowed
        later = [c for c in created if c >= finished]
        if later:
            gaps.append((later[0] - finished).total_seconds() * 1000)
    overhead = (wall - plain_wall) / plain_wall * 100
    print(f"foreach  {n} no-op items, maxConcurrency 50: {wall:.1f} s wall ({overhead:+.0f} % vs plain); "
          f"step ended → next submitted p50 {pct(gaps, 0.5):.0f} ms, p99 {pct(gaps, 0.99):.0f} ms", flush=True)


def chain_phase(services: Services, steps: int) -> None:
    definition: dict[str, Any] = {"version": "v1", "type": "flow", "steps": [
        {"name": f"s{k}", "type": "task", "resourceArn": f"function:{NOOP}"} for k in range(steps)]}
    pk, wall = run_flow(services, "bench-chain", definition, "{}")
    rows = _invocations(services, execution_pk=pk, since=EPOCH)
    gaps = [(rows[k][0] - rows[k - 1][1]).total_seconds() * 1000 for k in range(1, len(rows))]
    print(f"chain    {steps} no-op steps in a row: {wall:.1f} s wall; step ended → next submitted "
          f"p50 {pct(gaps, 0.5):.0f} ms, p99 {pct(gaps, 0.99):.0f} ms", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true")
    args = parser.parse_args()
    n, chain = (200, 20) if args.quick else (1000, 50)
    print("machine:", describe_machine(), f"background load {background_load():.2f} cores", flush=True)
    with fresh_run("flows") as run:
        services, procs = run.services, []
        try:
            services.ledger.put_function(NOOP, FunctionConfig(handler="workers.handlers.noop:handler",
                                                              max_retries=0))
            procs.append(start(["worker", "-c", "2", "--quiet", "--loglevel", "WARNING"], run.env,
                               run.logs / "worker.log"))
            procs.append(start(["engine", "--loglevel", "WARNING"], run.env, run.logs / "engine.log"))
            services.submitter.submit(NOOP, {})  # the worker's first attempt is its boot, not a figure
            wait_until(lambda: bool(_invocations(services, execution_pk=None, since=EPOCH)[0][1]),
                       120, "the worker to start")
            plain = plain_phase(services, n)
            foreach_phase(services, n, plain)
            chain_phase(services, chain)
        finally:
            for proc in procs:
                stop(proc)


if __name__ == "__main__":
    main()
