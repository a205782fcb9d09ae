"""`taskservice worker --health-port`: readiness and liveness from the worker's own state, on real backends."""
from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import requests
from flask.testing import FlaskClient

from taskservice.services import Services
from tests.conftest import Backend, ServiceProcess, deploy, free_port, migrated, postgres_backend, wait_for_status


class HealthWorker(ServiceProcess):
    ready_marks = (b"ready.",)

    def __init__(self, backend: Backend, log_path: Path, **overrides: Any) -> None:
        self.health_port = free_port()
        super().__init__(backend, ["worker", "-c", "1", "--loglevel", "INFO", "--health-host", "127.0.0.1",
                                   "--health-port", str(self.health_port)], log_path, **overrides)

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        response = requests.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=5)
        return response.status_code, response.json()

    def wait_probe(self, path: str, status: int, timeout_s: float = 30) -> dict[str, Any]:
        deadline = time.monotonic() + timeout_s
        last: Any = None
        while time.monotonic() < deadline:
            with contextlib.suppress(requests.ConnectionError):
                code, body = self.probe(path)
                if code == status:
                    return body
                last = (code, body)
            time.sleep(0.1)
        raise AssertionError(f"{path} did not answer {status} within {timeout_s}s; last {last}\n"
                             f"{self.log_path.read_text()[-2000:]}")


@pytest.fixture
def start_health_worker(tmp_path: Path) -> Iterator[Callable[..., HealthWorker]]:
    started: list[HealthWorker] = []

    def start(backend: Backend, **overrides: Any) -> HealthWorker:
        worker = HealthWorker(backend, tmp_path / f"health-worker-{len(started)}.log", **overrides)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


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
                                                         services: Services, fn_name: str) -> None:
    worker = start_health_worker(backend)
    worker.wait_probe("/readyz", 200)
    deploy(app_client, fn_name, "workers.handlers.sleep:handler", max_retries=0)
    response = app_client.post(f"/v1/functions/{fn_name}/invocations", json={"seconds": 4, "step": 0.2},
                               headers={"X-Invocation-Id": "drain_me"})
    assert response.status_code == 202
    wait_for_status(services, fn_name, "drain_me", {"Running"})
    worker.proc.terminate()  # SIGTERM: a warm shutdown lets the running attempt finish
    body = worker.wait_probe("/readyz", 503, timeout_s=10)
    assert body["checks"]["draining"] is True
    code, alive = worker.probe("/healthz")
    assert code == 200 and alive["healthy"] is True
    worker.proc.wait(timeout=60)
    with pytest.raises(requests.ConnectionError):  # the port went with the process (pool children closed it)
        worker.probe("/healthz")


class TcpRelay:
    """A listener on a free port forwarding to target; stop() closes it and every connection through it, as a cut
    link would."""

    def __init__(self, target: tuple[str, int], port: int = 0) -> None:
        self.target = target
        self.listener = socket.create_server(("127.0.0.1", port))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.sockets: list[socket.socket] = []
        self._stop = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            upstream = socket.create_connection(self.target)
            self.sockets += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket) -> None:
        with contextlib.suppress(OSError):
            while data := source.recv(65536):
                sink.sendall(data)
        with contextlib.suppress(OSError):
            sink.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self._stop.set()
        self.listener.close()
        for s in self.sockets:
            with contextlib.suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()


@pytest.fixture
def postgres_through_a_relay(tmp_path: Path) -> Iterator[tuple[Backend, TcpRelay]]:
    relay = TcpRelay(("127.0.0.1", 5432))
    try:
        yield from ((b, relay) for b in migrated(postgres_backend(tmp_path)))
    finally:
        relay.stop()


def test_a_ledger_outage_makes_a_worker_unready_but_not_unhealthy(
        postgres_through_a_relay: tuple[Backend, TcpRelay], start_health_worker: Callable[..., HealthWorker]) -> None:
    backend, relay = postgres_through_a_relay
    url = backend.settings.database_url.replace("127.0.0.1:5432", f"127.0.0.1:{relay.port}")
    worker = start_health_worker(backend, database_url=url)
    worker.wait_probe("/readyz", 200)
    relay.stop()  # the worker's link to Postgres is cut; RabbitMQ stays reachable
    body = worker.wait_probe("/readyz", 503, timeout_s=20)
    assert body["checks"]["ledger"]["ok"] is False and body["checks"]["ledger"]["error"]
    assert body["checks"]["consumer"]["ok"] is True
    code, alive = worker.probe("/healthz")
    assert code == 200, alive  # restarting workers would not bring the database back
    restored = TcpRelay(("127.0.0.1", 5432), port=relay.port)
    try:
        worker.wait_probe("/readyz", 200, timeout_s=20)
    finally:
        restored.stop()
