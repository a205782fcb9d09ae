"""Fixtures: the two backends (embedded; Postgres + RabbitMQ), live workers and an API client.

A server that is not reachable fails the run: these tests exist to exercise the real components.
"""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient
from sqlalchemy import text

from taskservice import create_app, migrate
from taskservice.config import Settings
from taskservice.db import make_engine
from taskservice.services import Services
from tests.kafka_broker import kafka_broker  # noqa: F401 - a session fixture, shared with every test module

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TASKSERVICE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TASKSERVICE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
FAST = {"lease_s": 3.0, "heartbeat_s": 0.3, "reaper_interval_s": 0.5, "retry_base_s": 0.2, "retry_max_s": 1.0,
        "auth": False}


def require_port(host: str, port: int, what: str) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{what} is not reachable on {host}:{port} ({exc}); run `make services`", pytrace=False)


@dataclass
class Backend:
    name: str
    settings: Settings
    cleanup: list[Callable[[], None]] = field(default_factory=list)

    def env(self, **overrides: Any) -> dict[str, str]:
        settings = self.settings.merged(**overrides)
        env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
        env.update(settings.to_env())
        env["PYTHONPATH"] = str(REPO)
        return env


def postgres_backend(tmp: Path) -> Backend:
    require_port("127.0.0.1", 5432, "PostgreSQL")
    require_port("127.0.0.1", 5672, "RabbitMQ")
    db = f"ts_test_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    settings = Settings(data_dir=tmp, database_url=PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}", broker_url=AMQP_URL,
                        queue=f"ts_test_{uuid.uuid4().hex[:10]}", **FAST)

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        _delete_queue(settings.queue)

    return Backend("postgres", settings, [drop])


def _delete_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(AMQP_URL) as conn:
        conn.default_channel.queue_delete(queue)
        conn.default_channel.exchange_delete(queue)


@pytest.fixture(scope="session", params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    tmp = tmp_path_factory.mktemp(request.param)
    if request.param == "embedded":
        b = Backend("embedded", Settings(data_dir=tmp, **FAST))
    else:
        b = postgres_backend(tmp)
    yield from migrated(b)


def migrated(b: Backend) -> Iterator[Backend]:
    """Bring the backend's ledger to the newest schema, hand it out, then drop what it created."""
    services = Services.build(b.settings)
    migrate.upgrade(services.engine)
    services.close()
    yield b
    for fn in b.cleanup:
        fn()


@pytest.fixture(scope="session")
def services(backend: Backend) -> Iterator[Services]:
    s = Services.build(backend.settings)
    yield s
    s.close()


@pytest.fixture(scope="session")
def app_client(backend: Backend) -> FlaskClient:
    return create_app(backend.settings).test_client()


class ServiceProcess:
    """One `taskservice <command>` in its own session, logging to a file, as production runs it."""

    ready_marks: tuple[bytes, ...] = ()

    def __init__(self, backend: Backend, args: list[str], log_path: Path, **overrides: Any) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "taskservice.cli", *args], cwd=REPO,
                                     env=backend.env(**overrides), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        deadline = time.monotonic() + 30
        while not any(mark in log_path.read_bytes() for mark in self.ready_marks):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"{args[0]} did not start:\n{log_path.read_text()[-3000:]}")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the whole process group: no chance to clean up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait()
        self.log.close()

    def stop(self) -> None:
        """Graceful stop through the main process only (signalling a Celery pool directly can hang billiard)."""
        if self.proc.poll() is None:
            self.proc.terminate()
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(timeout=15)
        self.kill()


class WorkerProcess(ServiceProcess):
    ready_marks = (b"reaper started", b"ready.")

    def __init__(self, backend: Backend, concurrency: int, log_path: Path, **overrides: Any) -> None:
        super().__init__(backend, ["worker", "-c", str(concurrency), "--loglevel", "INFO"], log_path, **overrides)


@pytest.fixture
def start_worker(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    started: list[WorkerProcess] = []

    def start(concurrency: int = 2, **overrides: Any) -> WorkerProcess:
        worker = WorkerProcess(backend, concurrency, tmp_path / f"worker-{len(started)}.log", **overrides)
        started.append(worker)
        return worker

    yield start
    for worker in started:
        worker.stop()


class RelayProcess(ServiceProcess):
    ready_marks = (b"started",)

    def __init__(self, backend: Backend, log_path: Path, **overrides: Any) -> None:
        super().__init__(backend, ["relay", "--loglevel", "INFO"], log_path, **overrides)


RELAY_FAST = {"relay_lease_s": 3.0, "relay_idle_s": 0.05, "relay_backoff_base_s": 0.2, "relay_backoff_max_s": 1.0}


@pytest.fixture
def start_relay(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    started: list[RelayProcess] = []

    def start(**overrides: Any) -> RelayProcess:
        relay = RelayProcess(backend, tmp_path / f"relay-{len(started)}.log", **{**RELAY_FAST, **overrides})
        started.append(relay)
        return relay

    yield start
    for relay in started:
        relay.stop()


@pytest.fixture(scope="session")
def shared_worker(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    worker = WorkerProcess(backend, 2, tmp_path_factory.mktemp("shared-worker") / "worker.log")
    yield worker
    worker.stop()


@pytest.fixture
def fn_name() -> str:
    """A fresh function name per test, so tests sharing a ledger never see each other's invocations."""
    return f"fn_{uuid.uuid4().hex[:12]}"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for_health(base: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60) -> None:
    """Wait until a server process answers /healthz; fail with its log if it dies or stays silent."""
    import requests

    deadline = time.monotonic() + timeout_s
    while True:
        with contextlib.suppress(requests.ConnectionError):
            if requests.get(f"{base}/healthz", timeout=1).status_code == 200:
                return
        if proc.poll() is not None or time.monotonic() > deadline:
            raise RuntimeError(f"{base} did not answer /healthz:\n{log_path.read_text()[-4000:]}")
        time.sleep(0.1)


def deploy(client: FlaskClient, name: str, handler: str, **config: Any) -> dict[str, Any]:
    response = client.put(f"/v1/functions/{name}", json={"handler": handler, **config})
    assert response.status_code in (200, 201), response.get_json()
    return response.get_json()


def wait_for_status(services: Services, function: str, invocation_id: str, statuses: set[str],
                    timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    inv = None
    while time.monotonic() < deadline:
        inv = services.ledger.find_invocation(function, invocation_id)
        if inv is not None and inv.status.value in statuses:
            return inv
        time.sleep(0.05)
    raise AssertionError(f"{function}/{invocation_id} did not reach {statuses} in {timeout_s}s; last: "
                         f"{None if inv is None else (inv.status.value, inv.error_type, inv.error)}")


def process_gone(pid: int, grace_s: float = 5.0) -> bool:
    """Whether pid has ended within a short grace (SIGKILL is delivered asynchronously; zombies count as gone)."""
    deadline = time.monotonic() + grace_s
    while True:
        try:
            if psutil.Process(pid).status() == psutil.STATUS_ZOMBIE:
                return True
        except psutil.NoSuchProcess:
            return True
        if time.monotonic() > deadline:
            return False
        time.sleep(0.02)


@pytest.fixture(scope="session", name="deploy")
def deploy_fixture() -> Callable[..., dict[str, Any]]:
    return deploy


@pytest.fixture(scope="session", name="wait_for_status")
def wait_for_status_fixture() -> Callable[..., Any]:
    return wait_for_status


@pytest.fixture(scope="session")
def eventually() -> Callable[..., Any]:
    def poll(probe: Callable[[], Any], *, what: str, timeout_s: float = 30.0) -> Any:
        deadline = time.monotonic() + timeout_s
        while not (value := probe()):
            if time.monotonic() > deadline:
                raise AssertionError(f"timed out waiting for {what}; last {value!r}")
            time.sleep(0.05)
        return value

    return poll
