"""What the fixtures in tests/conftest.py are made of: the backends, `taskservice <command>` processes and `eventually`.

Test modules do not call into this module: they get all of it through fixtures. They import its classes only as
type annotations (under TYPE_CHECKING).
"""
from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import psutil
import pytest
from sqlalchemy import Connection, Engine, text

from taskservice import migrate
from taskservice.config import Settings
from taskservice.db import make_engine
from taskservice.services import Services

REPO = Path(__file__).resolve().parent.parent
PG_ADMIN_URL = os.environ.get("TASKSERVICE_TEST_PG", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
AMQP_URL = os.environ.get("TASKSERVICE_TEST_AMQP", "amqp://guest:guest@127.0.0.1:5672//")
FAST = {"lease_s": 3.0, "heartbeat_s": 0.3, "reaper_interval_s": 0.5, "retry_base_s": 0.2, "retry_max_s": 1.0,
        "drain_s": 2.0, "auth": False}
RELAY_FAST = {"relay_lease_s": 3.0, "relay_idle_s": 0.05, "relay_backoff_base_s": 0.2, "relay_backoff_max_s": 1.0}
POLL_S = 0.05

T = TypeVar("T")


def _shown(value: Any, limit: int = 1500) -> str:
    shown = repr(value)
    return shown if len(shown) <= limit else f"{shown[:limit]}… ({len(shown)} characters)"


def eventually(probe: Callable[[], T], *, what: str, timeout_s: float = 30.0,
               until: Callable[[T], Any] | None = None, describe: Callable[[], str] | None = None) -> T:
    """Call `probe` until its value is truthy (or, given `until`, until `until(value)` is), and return that value.

    Fails after `timeout_s` naming `what` was awaited and the last value seen (and, given `describe`, what it says
    then). An exception from `probe` is not swallowed: a probe that knows the wait is hopeless (a process died) raises
    to end it at once.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        value = probe()
        if (until(value) if until is not None else value):
            return value
        if time.monotonic() > deadline:
            detail = "" if describe is None else f"\n{describe()}"
            raise AssertionError(f"timed out after {timeout_s:g}s waiting for {what}; last value seen: "
                                 f"{_shown(value)}{detail}")
        time.sleep(POLL_S)


def process_gone(pid: int, grace_s: float = 5.0) -> bool:
    """Whether pid has ended within a short grace (SIGKILL is delivered asynchronously; zombies count as gone)."""
    def gone() -> bool:
        try:
            return psutil.Process(pid).status() == psutil.STATUS_ZOMBIE
        except psutil.NoSuchProcess:
            return True

    try:
        return eventually(gone, timeout_s=grace_s, what=f"process {pid} to end")
    except AssertionError:
        return False


def require_port(host: str, port: int, what: str) -> None:
    try:
        socket.create_connection((host, port), timeout=3).close()
    except OSError as exc:
        pytest.fail(f"{what} is not reachable on {host}:{port} ({exc}); run `make services`", pytrace=False)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


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


def create_postgres_database(prefix: str) -> tuple[str, Callable[[], None]]:
    """A new empty database; returns its URL and the function that drops it."""
    require_port("127.0.0.1", 5432, "PostgreSQL")
    db = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin = make_engine(PG_ADMIN_URL).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))

    def drop() -> None:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()

    return PG_ADMIN_URL.rsplit("/", 1)[0] + f"/{db}", drop


def postgres_backend(tmp: Path, **overrides: Any) -> Backend:
    require_port("127.0.0.1", 5672, "RabbitMQ")
    url, drop = create_postgres_database("ts_test")
    settings = Settings(data_dir=tmp, database_url=url, broker_url=AMQP_URL,
                        queue=f"ts_test_{uuid.uuid4().hex[:10]}", **FAST).merged(**overrides)
    return Backend("postgres", settings, [drop, lambda: delete_queue(settings.queue)])


def embedded_backend(tmp: Path, **overrides: Any) -> Backend:
    return Backend("embedded", Settings(data_dir=tmp, **FAST).merged(**overrides))


@contextlib.contextmanager
def unread_queue(backend: Backend, suffix: str) -> Iterator[Settings]:
    """`backend`'s settings on a queue no worker reads, for tests whose invocations must never start (or must not
    leave a backlog for the session's shared worker); on RabbitMQ the queue goes afterwards, doorbells and all."""
    settings = backend.settings.merged(queue=f"{backend.settings.queue}_{suffix}")
    yield settings
    if backend.name == "postgres":
        delete_queue(settings.queue)


def delete_queue(queue: str) -> None:
    from kombu import Connection

    with Connection(AMQP_URL) as conn:
        conn.default_channel.queue_delete(queue)
        conn.default_channel.exchange_delete(queue)


@contextlib.contextmanager
def lock_holder(engine: Engine) -> Iterator[Connection]:
    """A Postgres connection for a test to hold locks on (`LOCK TABLE ... IN SHARE MODE`) for as long as it takes
    the process under test to run into them: the ledger's bound on an idle transaction (15 s) is lifted for it.
    Whatever it holds is released at the end."""
    with engine.connect() as conn:
        conn.execute(text("SET idle_in_transaction_session_timeout = 0"))
        conn.commit()
        try:
            yield conn
        finally:
            conn.rollback()


def backends_running(engine: Engine, query_like: str = "%", *, waiting_for_a_lock: bool) -> int:
    """Other Postgres backends of `engine`'s database running a statement ILIKE `query_like`: those waiting for a
    lock, or (waiting_for_a_lock=False) those active. How a test sees the process under test stop at its lock."""
    state = "wait_event_type = 'Lock'" if waiting_for_a_lock else "state = 'active'"
    with engine.connect() as conn:
        return int(conn.execute(text(
            f"SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid() "
            f"AND {state} AND query ILIKE :q"), {"q": query_like}).scalar_one())


def migrated(b: Backend) -> Iterator[Backend]:
    """Bring the backend's ledger to the newest schema, hand it out, then drop what it created."""
    services = Services.build(b.settings)
    migrate.upgrade(services.engine)
    services.close()
    yield b
    for fn in b.cleanup:
        fn()


class ServiceProcess:
    """One `taskservice <command>` in its own session, logging to a file, as production runs it."""

    ready_marks: tuple[bytes, ...] = ()

    def __init__(self, backend: Backend, args: list[str], log_path: Path, **overrides: Any) -> None:
        self.log_path = log_path
        self.log = open(log_path, "ab")
        self.proc = subprocess.Popen([sys.executable, "-m", "taskservice.cli", *args], cwd=REPO,
                                     env=backend.env(**overrides), stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)
        try:
            eventually(self._ready, what=f"`taskservice {args[0]}` to log one of {self.ready_marks}")
        except AssertionError as exc:
            self.kill()
            raise AssertionError(f"{exc}\n{self.output()}") from None
        except BaseException:
            self.kill()
            raise

    def output(self, last: int = 4000) -> str:
        return self.log_path.read_text(errors="replace")[-last:]

    def _ready(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"{self.proc.args[3]} exited with {self.proc.returncode}:\n{self.output()}")
        log = self.log_path.read_bytes()
        return any(mark in log for mark in self.ready_marks)

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


_TASK_LINE = re.compile(r"Task \S+\[([0-9a-f-]+)\] (received|succeeded in \S+: '(\w+)'|raised|failed)")


class WorkerProcess(ServiceProcess):
    ready_marks = (b"reaper started", b"ready.")

    def __init__(self, backend: Backend, concurrency: int, log_path: Path, *, options: tuple[str, ...] = (),
                 **overrides: Any) -> None:
        super().__init__(backend, ["worker", "-c", str(concurrency), "--loglevel", "INFO", *options], log_path,
                         **overrides)

    def doorbells(self) -> tuple[int, list[str]]:
        """From the worker's log: how many doorbells it received, and the word the runner returned for each one it
        finished ("succeeded", "skipped", "stopped", ...; "raised" when the task itself failed), in order."""
        received, outcomes = set(), []
        for task_id, event, word in _TASK_LINE.findall(self.log_path.read_text(errors="replace")):
            if event == "received":
                received.add(task_id)
            else:
                outcomes.append(word or event.split()[0])
        return len(received), outcomes

    def idle(self) -> bool:
        """Whether it has finished every doorbell it received (and received at least one)."""
        received, outcomes = self.doorbells()
        return received > 0 and len(outcomes) >= received


class HealthWorker(WorkerProcess):
    """A one-slot worker serving its readiness (/readyz) and liveness (/healthz) on a free `--health-port`."""

    ready_marks = (b"ready.",)

    def __init__(self, backend: Backend, log_path: Path, **overrides: Any) -> None:
        self.health_port = free_port()
        super().__init__(backend, 1, log_path, options=("--health-host", "127.0.0.1", "--health-port",
                                                        str(self.health_port)), **overrides)

    def probe(self, path: str) -> tuple[int, dict[str, Any]]:
        import requests

        response = requests.get(f"http://127.0.0.1:{self.health_port}{path}", timeout=5)
        return response.status_code, response.json()

    def wait_probe(self, path: str, status: int, timeout_s: float = 30) -> dict[str, Any]:
        """Until `path` answers `status`; its body. Fails with the last answer and the worker's log."""
        import requests

        def answer() -> tuple[int, dict[str, Any]] | str:
            try:
                return self.probe(path)
            except requests.ConnectionError as exc:
                return type(exc).__name__

        found = eventually(answer, until=lambda got: isinstance(got, tuple) and got[0] == status,
                           timeout_s=timeout_s, what=f"{path} to answer {status}",
                           describe=lambda: self.output(2000))
        assert isinstance(found, tuple)
        return found[1]


class RelayProcess(ServiceProcess):
    ready_marks = (b"started",)

    def __init__(self, backend: Backend, log_path: Path, **overrides: Any) -> None:
        super().__init__(backend, ["relay", "--loglevel", "INFO"], log_path, **{**RELAY_FAST, **overrides})


class EngineProcess(ServiceProcess):
    """`taskservice engine`; `kill()` is the SIGKILL the tests inflict."""

    ready_marks = (b"flow engine started",)

    def __init__(self, backend: Backend, log_path: Path, **overrides: Any) -> None:
        super().__init__(backend, ["engine", "--loglevel", "INFO"], log_path, **overrides)


class IngestProcess(ServiceProcess):
    """`taskservice ingest` as production runs it; `kill()` is the SIGKILL the tests inflict."""

    ready_marks = (b"consuming",)

    def __init__(self, backend: Backend, log_path: Path, **overrides: Any) -> None:
        super().__init__(backend, ["ingest", "--loglevel", "INFO"], log_path, **overrides)


class ApiProcess(ServiceProcess):
    """`taskservice api` (gunicorn) on a free port; ready once it answers /healthz."""

    ready_marks = (b"Listening at",)

    def __init__(self, backend: Backend, log_path: Path, *, workers: int = 2, **overrides: Any) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        super().__init__(backend, ["api", "--port", str(self.port), "--workers", str(workers)], log_path,
                         **overrides)
        try:
            wait_for_health(self.base, self.proc, log_path)
        except BaseException:  # a server that never became healthy is nobody's to stop later: stop it here
            self.kill()
            raise


def wait_for_health(base: str, proc: subprocess.Popen[bytes], log_path: Path, timeout_s: float = 60) -> None:
    """Wait until a server process answers /healthz; fail with its log if it dies or stays silent."""
    import requests

    def healthy() -> int | str:
        if proc.poll() is not None:
            raise RuntimeError(f"{base} exited with {proc.returncode}:\n{log_path.read_text()[-4000:]}")
        try:
            return requests.get(f"{base}/healthz", timeout=1).status_code
        except (requests.ConnectionError, requests.Timeout) as exc:  # a first answer slow on a busy machine
            return type(exc).__name__

    try:
        eventually(healthy, until=lambda answer: answer == 200, timeout_s=timeout_s, what=f"{base}/healthz")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{log_path.read_text()[-4000:]}") from None


class DevProcess:
    """`taskservice dev` in its own session on a free port and a fresh data dir, answering /healthz. `program` is how
    to run `taskservice` (this tree's by default). `stop()`: SIGTERM to its process group; the children it names in
    its banner are killed too if they outlive it."""

    def __init__(self, log_path: Path, data_dir: Path, *flags: str, program: tuple[str, ...] | None = None,
                 cwd: Path = REPO, env: dict[str, str] | None = None, timeout_s: float = 120) -> None:
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log_path = log_path
        if env is None:
            env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
        command = [*(program or (sys.executable, "-m", "taskservice.cli")), "dev", "--port", str(self.port),
                   "--data-dir", str(data_dir), *flags]
        with open(log_path, "wb") as log:
            self.proc = subprocess.Popen(command, cwd=cwd, env=env, stdout=log, stderr=subprocess.STDOUT,
                                         start_new_session=True)
        try:
            wait_for_health(self.base, self.proc, log_path, timeout_s=timeout_s)
        except BaseException:
            self.stop()
            raise

    def lines(self) -> list[str]:
        """Its output so far, without blank lines."""
        return [line for line in self.log_path.read_text().splitlines() if line.strip()]

    def stop(self) -> None:
        children = [int(pid) for pid in re.findall(r", pid (\d+)$", self.log_path.read_text(), re.MULTILINE)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGTERM)
        self.proc.wait(timeout=60)
        for pid in children:
            if not process_gone(pid, grace_s=0):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


class Launcher:
    """Starts `taskservice` processes with their logs in one directory; `stop_all()` stops every one still running."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.started: list[ServiceProcess] = []

    def _log(self, kind: str) -> Path:
        return self.log_dir / f"{kind}-{len(self.started)}.log"

    def _keep(self, proc: Any) -> Any:
        self.started.append(proc)
        return proc

    def worker(self, backend: Backend, concurrency: int = 2, **overrides: Any) -> WorkerProcess:
        return self._keep(WorkerProcess(backend, concurrency, self._log("worker"), **overrides))

    def health_worker(self, backend: Backend, **overrides: Any) -> HealthWorker:
        return self._keep(HealthWorker(backend, self._log("health-worker"), **overrides))

    def relay(self, backend: Backend, **overrides: Any) -> RelayProcess:
        return self._keep(RelayProcess(backend, self._log("relay"), **overrides))

    def engine(self, backend: Backend, **overrides: Any) -> EngineProcess:
        return self._keep(EngineProcess(backend, self._log("engine"), **overrides))

    def ingest(self, backend: Backend, **overrides: Any) -> IngestProcess:
        return self._keep(IngestProcess(backend, self._log("ingest"), **overrides))

    def api(self, backend: Backend, *, workers: int = 2, **overrides: Any) -> ApiProcess:
        return self._keep(ApiProcess(backend, self._log("api"), workers=workers, **overrides))

    def stop_all(self, grace_s: float = 15.0) -> None:
        """Stop every process still running, all at once: SIGTERM to each main process, up to `grace_s` in all for
        them to finish, then SIGKILL to whatever is left of each group (one by one, a worker that hangs in its warm
        shutdown after a broker restart would cost the grace once per process)."""
        for proc in self.started:
            if proc.proc.poll() is None:
                proc.proc.terminate()
        deadline = time.monotonic() + grace_s
        for proc in self.started:
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.proc.wait(timeout=max(0.0, deadline - time.monotonic()))
            proc.kill()


class OwnStack:
    """A backend of its own (fresh ledger and queue) with one 2-slot worker and no flow engine but the ones the test
    starts (`engine()`): no shared process can do the work a killed one should have left behind. `client` is a Flask
    test client of the API, `services` the ledger side."""

    def __init__(self, backend: Backend, launcher: Launcher) -> None:
        from taskservice.app import create_app
        from taskservice.services import Services

        self.backend, self.launcher = backend, launcher
        self.client = create_app(backend.settings).test_client()
        self.services = Services.build(backend.settings)
        launcher.worker(backend, 2)

    def engine(self) -> EngineProcess:
        return self.launcher.engine(self.backend)

    def close(self) -> None:
        self.launcher.stop_all()
        self.services.close()
