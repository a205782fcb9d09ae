"""`taskservice worker --health-port`: readiness and liveness from the worker's own state, on real backends."""
from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import pytest
import requests
from flask.testing import FlaskClient

from taskservice.services import Services

if TYPE_CHECKING:
    from tests.support import Backend, HealthWorker
    from tests.tcp_relay import TcpRelay

PG = ("127.0.0.1", 5432)


def test_a_started_worker_is_ready_and_healthy_and_says_why(start_health_worker: Callable[..., HealthWorker],
                                                             backend: Backend) -> None:
    worker = start_health_worker(backend)
    body = worker.wait_probe("/readyz", 200)
    assert body["ready"] is body["healthy"] is True
    assert {name: check["ok"] for name, check in body["checks"].items() if name != "draining"} == \
        {"consumer": True, "ledger": True, "reaper": True}
    assert worker.probe("/healthz")[0] == 200
    assert requests.get(f"http://127.0.0.1:{worker.health_port}/nope", timeout=5).status_code == 404


def test_a_draining_worker_is_not_ready_but_still_alive(start_health_worker: Callable[..., HealthWorker],
                                                         backend: Backend, app_client: FlaskClient,
                                                         services: Services, fn_name: str,
                                                         deploy: Callable[..., Any], submit: Callable[..., str],
                                                         wait_for_status: Callable[..., Any]) -> None:
    worker = start_health_worker(backend)
    worker.wait_probe("/readyz", 200)
    deploy(app_client, fn_name, "workers.handlers.sleep:handler", max_retries=0)
    submit(app_client, fn_name, {"seconds": 4, "step": 0.2}, invocation_id="drain_me")
    wait_for_status(services, fn_name, "drain_me", {"Running"})
    worker.proc.terminate()  # SIGTERM: a warm shutdown lets the running attempt finish
    body = worker.wait_probe("/readyz", 503, timeout_s=10)
    assert body["checks"]["draining"] is True
    code, alive = worker.probe("/healthz")
    assert code == 200 and alive["healthy"] is True
    worker.proc.wait(timeout=60)
    with pytest.raises(requests.ConnectionError):  # the port went with the process (pool children closed it)
        worker.probe("/healthz")


@pytest.fixture
def postgres_through_a_relay(new_backend: Callable[..., Backend],
                             tcp_relay: Callable[[], TcpRelay]) -> tuple[Backend, TcpRelay, int]:
    """A Postgres backend of its own and a relay on a free port to the machine's Postgres: (backend, relay, port)."""
    relay = tcp_relay()
    return new_backend("postgres"), relay, relay.forward("127.0.0.1", 0, *PG)


def test_a_ledger_outage_makes_a_worker_unready_but_not_unhealthy(
        postgres_through_a_relay: tuple[Backend, TcpRelay, int], start_health_worker: Callable[..., HealthWorker],
        tcp_relay: Callable[[], TcpRelay]) -> None:
    backend, relay, port = postgres_through_a_relay
    url = backend.settings.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{port}")
    worker = start_health_worker(backend, database_url=url)
    worker.wait_probe("/readyz", 200)
    relay.close()  # the worker's link to Postgres is cut; RabbitMQ stays reachable
    body = worker.wait_probe("/readyz", 503, timeout_s=20)
    assert body["checks"]["ledger"]["ok"] is False and body["checks"]["ledger"]["error"]
    assert body["checks"]["consumer"]["ok"] is True
    code, alive = worker.probe("/healthz")
    assert code == 200, alive  # restarting workers would not bring the database back
    tcp_relay().forward("127.0.0.1", port, *PG)  # the link is back, on the same port
    worker.wait_probe("/readyz", 200, timeout_s=20)
