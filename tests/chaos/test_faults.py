"""The fault model (design §6) against the machine's real Postgres and RabbitMQ, stopped and restarted for real.

These run last in the session (tests/conftest.py orders them), because they take the shared servers away for a few
seconds; everything else must survive that too, but should not have to.
"""
from __future__ import annotations

import collections
import os
import random
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import requests
from sqlalchemy import func, select

from taskservice.app import create_app
from taskservice.db import is_outage
from taskservice.errors import DuplicateInvocation
from taskservice.ledger.models import DELIVERIES, INVOCATIONS
from taskservice.services import Services

if TYPE_CHECKING:
    from tests.chaos.servers import Postgres, RabbitMQ
    from tests.support import Backend, Launcher

pytestmark = pytest.mark.chaos


def test_a_ten_second_postgres_stop_kills_no_running_attempt(
        new_backend: Callable[..., Backend], launch: Launcher, deploy: Callable[..., Any],
        wait_for_status: Callable[..., Any], postgres: Postgres, fault_clock: list[tuple[str, float]]) -> None:
    backend = new_backend("postgres", lease_s=30.0, heartbeat_s=2.0, reaper_interval_s=1.0)
    services = Services.build(backend.settings)
    try:
        deploy(create_app(backend.settings).test_client(), "long", "workers.handlers.sleep:handler", timeout_s=300)
        workers = [launch.worker(backend, 2) for _ in range(2)]
        invocations = [services.submitter.submit("long", {"seconds": 25, "step": 0.25}) for _ in range(4)]
        for inv in invocations:
            wait_for_status(services, "long", inv.invocation_id, {"Running"})
        postgres.stop()
        fault_clock.append(("postgres stopped", time.monotonic()))
        time.sleep(10)  # the outage lasts this long: shorter than the 30 s lease
        postgres.start()
        fault_clock.append(("postgres started", time.monotonic()))
        done = [wait_for_status(services, "long", inv.invocation_id, {"Succeeded", "Failed"}, timeout_s=90)
                for inv in invocations]
        assert [(d.status.value, d.attempts) for d in done] == [("Succeeded", 1)] * 4
        # Progress written during the outage waited in the buffer and arrived; the handler's own lines too.
        assert all(d.progress_percent == 100.0 for d in done)
        assert all(any("sleeping" in line.message for line in services.ledger.logs(d.pk)) for d in done)
        log = "\n".join(w.output(20000) for w in workers)
        assert "ledger unreachable" in log and "kept running" in log, log[-3000:]
    finally:
        services.close()


def test_a_claim_waits_out_a_database_restart(
        new_backend: Callable[..., Backend], launch: Launcher, deploy: Callable[..., Any],
        wait_for_status: Callable[..., Any], eventually: Callable[..., Any], postgres: Postgres) -> None:
    backend = new_backend("postgres")
    services = Services.build(backend.settings)
    try:
        deploy(create_app(backend.settings).test_client(), "quick", "workers.handlers.noop:handler")
        worker = launch.worker(backend, 1)
        # The row first, then the doorbell alone while the ledger is down: the worker gets it and cannot claim.
        inv = services.ledger.create_invocation("quick", "claimed_late", str(uuid.uuid4()), "{}",
                                                queue=backend.settings.queue)
        postgres.stop()
        services.dispatcher.ring(inv.pk)
        # The worker took the doorbell while the ledger is down: its claim is now failing and trying again.
        eventually(lambda: "received" in worker.output(20000), what="the worker to receive the doorbell")
        postgres.start()
        done = wait_for_status(services, "quick", "claimed_late", {"Succeeded"}, timeout_s=30)
        assert done.attempts == 1
    finally:
        services.close()


def test_the_api_answers_503_during_an_outage_and_the_cli_retries_with_the_same_id(
        new_backend: Callable[..., Backend], launch: Launcher, repo_dir: Path, deploy: Callable[..., Any],
        eventually: Callable[..., Any], postgres: Postgres, tmp_path: Path) -> None:
    backend = new_backend("postgres")
    api = launch.api(backend)
    services = Services.build(backend.settings)
    try:
        deploy(create_app(backend.settings).test_client(), "echo", "workers.handlers.echo:handler")
        postgres.stop()
        submitted = requests.post(f"{api.base}/v1/functions/echo/invocations", json={"n": 1},
                                  headers={"X-Invocation-Id": "during_outage"}, timeout=30)
        read = requests.get(f"{api.base}/v1/functions/echo/invocations/during_outage", timeout=30)
        listed = requests.get(f"{api.base}/v1/invocations", timeout=30)
        health = requests.get(f"{api.base}/healthz", timeout=30)
        for answer in (submitted, read, listed):
            assert answer.status_code == 503, answer.text
            assert answer.headers["Retry-After"] == "2"
            assert answer.json()["error"]["code"] == "LedgerUnavailable"
        assert health.status_code == 503 and health.json()["database"].startswith("unavailable")
        assert health.json()["broker"] == "ok"
        # The CLI sends its submission while the ledger is away and keeps the same id until it is back.
        env = {**{k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")},
               "TASKSERVICE_API_URL": api.base, "PYTHONPATH": str(repo_dir)}
        stderr = tmp_path / "cli.err"
        with open(stderr, "w") as err_file:
            cli = subprocess.Popen([sys.executable, "-m", "taskservice.cli", "invoke", "echo", "-e", '{"n": 2}',
                                    "--json"], cwd=repo_dir, env=env, stdout=subprocess.DEVNULL, stderr=err_file)
        # The ledger comes back only once the CLI has been refused and is retrying.
        eventually(lambda: "trying again" in stderr.read_text(), what="the CLI to retry its submission")
        postgres.start()
        cli.wait(timeout=90)
        err = stderr.read_text()
        assert cli.returncode == 0, err
        assert "trying again" in err and "same request" in err
        with services.engine.connect() as conn:
            rows = conn.execute(select(func.count()).select_from(INVOCATIONS)
                                .where(INVOCATIONS.c.function == "echo")).scalar_one()
        assert rows == 1  # the CLI's submission, once, whatever the retries
        # Nothing of the refused submission was written: its id is free.
        again = requests.post(f"{api.base}/v1/functions/echo/invocations", json={"n": 1},
                              headers={"X-Invocation-Id": "during_outage"}, timeout=30)
        assert again.status_code == 202, again.text
        assert requests.get(f"{api.base}/healthz", timeout=30).status_code == 200
    finally:
        services.close()


def test_chaos_kills_restarts_and_outages_lose_nothing_and_double_no_record(
        new_backend: Callable[..., Backend], launch: Launcher, deploy: Callable[..., Any], eventually: Any,
        drain_queue: Callable[..., list[dict[str, Any]]], postgres: Postgres, rabbitmq: RabbitMQ,
        fault_clock: list[tuple[str, float]], tmp_path: Path) -> None:
    """300 invocations; a worker SIGKILLed every 2 s, RabbitMQ and Postgres restarted once each."""
    backend = new_backend("postgres", lease_s=6.0, heartbeat_s=1.0, reaper_interval_s=0.5)
    services = Services.build(backend.settings)
    marker = tmp_path / "executions"
    records = f"chaos_{uuid.uuid4().hex[:8]}"
    total = 300
    try:
        deploy(create_app(backend.settings).test_client(), "chaos", "tests.handlers:counted", max_retries=8,
               timeout_s=60,
               on_success=f"queue:{records}")
        launch.relay(backend)
        workers = [launch.worker(backend, 2) for _ in range(2)]
        accepted: list[str] = []
        submit_errors: collections.Counter[str] = collections.Counter()

        def submit_all() -> None:
            """Submit at about 20/s, across the whole fault window; through an outage, the same id again (as the CLI
            does)."""
            for n in range(total):
                invocation_id = f"chaos_{n}"
                while True:
                    try:
                        services.submitter.submit("chaos", {"marker": str(marker), "seconds": 0.3, "n": n},
                                                  invocation_id=invocation_id)
                    except DuplicateInvocation:
                        pass  # an earlier try was accepted after all
                    except Exception as exc:
                        if not is_outage(exc):
                            raise
                        submit_errors[type(exc).__name__] += 1
                        time.sleep(0.2)
                        continue
                    accepted.append(invocation_id)
                    break
                time.sleep(0.05)

        submitter = threading.Thread(target=submit_all, name="chaos-submitter")
        submitter.start()
        rng = random.Random(7)
        kills = 0
        started = time.monotonic()
        schedule = {5.0: "postgres", 11.0: "rabbitmq"}
        next_kill = started + 2
        while time.monotonic() - started < 18:
            time.sleep(max(0.0, next_kill - time.monotonic()))  # a kill every 2 s (or as soon as the last is back)
            next_kill = time.monotonic() + 2
            victim = rng.randrange(len(workers))
            workers[victim].kill()
            kills += 1
            fault_clock.append((f"worker {victim} SIGKILLed", time.monotonic()))
            for at, service in list(schedule.items()):
                if time.monotonic() - started >= at:
                    del schedule[at]
                    fault_clock.append((f"{service} restart", time.monotonic()))
                    if service == "postgres":
                        postgres.restart()
                    else:
                        rabbitmq.stop_app()
                        rabbitmq.start_app()
            workers[victim] = launch.worker(backend, 2)
        submitter.join(timeout=120)
        last_fault = time.monotonic()
        fault_clock.append(("last fault", last_fault))
        assert len(accepted) == total

        def finished() -> int:
            with services.engine.connect() as conn:
                return int(conn.execute(select(func.count()).select_from(INVOCATIONS).where(
                    INVOCATIONS.c.function == "chaos", INVOCATIONS.c.status == "Succeeded")).scalar_one())

        eventually(lambda: finished() == total, what="every accepted invocation to succeed within 30 s of the "
                                                      "last fault", timeout_s=30)
        recovered_s = time.monotonic() - last_fault
        invocations = [services.ledger.find_invocation("chaos", f"chaos_{n}") for n in range(total)]
        attempts = max(inv.attempts for inv in invocations)
        executions = collections.Counter(line.split()[0] for line in marker.read_text().splitlines())
        doubled = sum(count - 1 for count in executions.values() if count > 1)
        with services.engine.connect() as conn:
            per_request = conn.execute(select(DELIVERIES.c.request_id, func.count())
                                       .where(DELIVERIES.c.function == "chaos")
                                       .group_by(DELIVERIES.c.request_id)).all()
        delivered = drain_queue(backend.settings, records, total)
        by_request = collections.Counter(r["requestContext"]["requestId"] for r in delivered)
        print(f"chaos: {total} accepted, {kills} worker kills, submit retries {dict(submit_errors)}, all succeeded "
              f"{recovered_s:.1f}s after the last fault, max attempts {attempts}, duplicate executions {doubled}, "
              f"records delivered {len(delivered)} ({len(delivered) - len(by_request)} redelivered)")
        assert len(per_request) == total and all(count == 1 for _, count in per_request), "a doubled record"
        assert set(by_request) == {inv.request_id for inv in invocations}, "a record lost on the way"
        assert attempts <= 1 + kills
    finally:
        services.close()
