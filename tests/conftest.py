"""Fixtures: the two backends (embedded; Postgres + RabbitMQ), live processes, an API client, and the helpers every
test module uses (`deploy`, `submit`, `wait_for_status`, `eventually`, ...). Test modules get all of these as
fixtures and never import from here; what the fixtures are built from lives in tests/support.py.

A server that is not reachable fails the run: these tests exist to exercise the real components.
"""
from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.services import Services
from tests import support
from tests.kafka_broker import KafkaBroker
from tests.receiver import HttpReceiver
from tests.support import ApiProcess, Backend, IngestProcess, Launcher, RelayProcess, WorkerProcess
from tests.tcp_relay import TcpRelay

pytest_plugins = ["tests.kafka_broker"]  # the session's `kafka_broker` fixture, for every test module


# --- waiting ------------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def eventually() -> Callable[..., Any]:
    """`eventually(probe, what=..., timeout_s=30, until=None, describe=None)`: poll `probe` until its value is truthy
    (or `until(value)` is) and return the value; fail naming what was awaited, the last value seen and what
    `describe()` says then."""
    return support.eventually


@dataclass
class _Seen:
    status: str | None
    error_type: str | None = None
    error: str | None = None
    invocation: Any = field(default=None, repr=False)


def _wait_for_status(services: Services, function: str, invocation_id: str, statuses: set[str],
                     timeout_s: float = 30.0) -> Any:
    def seen() -> _Seen:
        inv = services.ledger.find_invocation(function, invocation_id)
        return _Seen(None) if inv is None else _Seen(inv.status.value, inv.error_type, inv.error, inv)

    return support.eventually(seen, until=lambda s: s.status in statuses, timeout_s=timeout_s,
                              what=f"{function}/{invocation_id} to reach {sorted(statuses)}").invocation


@pytest.fixture(scope="session")
def wait_for_status() -> Callable[..., Any]:
    """`wait_for_status(services, function, invocation_id, {"Succeeded", ...}, timeout_s=30)` → the invocation."""
    return _wait_for_status


@pytest.fixture(scope="session")
def process_gone() -> Callable[..., bool]:
    """`process_gone(pid, grace_s=5)`: whether pid has ended within the grace (zombies count as gone)."""
    return support.process_gone


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    return support.free_port


@pytest.fixture(scope="session")
def wait_for_health() -> Callable[..., None]:
    """`wait_for_health(base_url, proc, log_path, timeout_s=60)`: until the server answers /healthz."""
    return support.wait_for_health


@pytest.fixture(scope="session")
def repo_dir() -> Path:
    return support.REPO


# --- the API, as a client calls it -------------------------------------------------------------------------------
def _body(response: Any) -> Any:
    """The JSON of a Flask test-client or a requests response."""
    return response.get_json() if hasattr(response, "get_json") else response.json()


def _deploy(client: Any, name: str, handler: str, **config: Any) -> dict[str, Any]:
    response = client.put(f"/v1/functions/{name}", json={"handler": handler, **config})
    assert response.status_code in (200, 201), _body(response)
    return dict(_body(response))


def _submit(client: Any, function: str, payload: Any = None, invocation_id: str | None = None) -> str:
    headers = {"X-Invocation-Id": invocation_id} if invocation_id else {}
    response = client.post(f"/v1/functions/{function}/invocations", json=payload, headers=headers)
    assert response.status_code == 202, _body(response)
    return str(_body(response)["invocationId"])


@pytest.fixture(scope="session")
def deploy() -> Callable[..., dict[str, Any]]:
    """`deploy(client, name, handler, **config)`: PUT the function; `client` is a Flask test client or any client
    with the same put/post (the browser tests' session on a real server)."""
    return _deploy


@pytest.fixture(scope="session")
def submit() -> Callable[..., str]:
    """`submit(client, function, payload=None, invocation_id=None)` → the invocation id of an accepted submission."""
    return _submit


def _deploy_flow(client: Any, name: str, definition: Any, **config: Any) -> dict[str, Any]:
    response = client.put(f"/v1/flows/{name}", json={"definition": definition, **config})
    assert response.status_code in (200, 201), _body(response)
    return dict(_body(response))


def _start_execution(client: Any, flow: str, payload: Any = None, name: str | None = None) -> str:
    headers = {"X-Execution-Name": name} if name else {}
    response = client.post(f"/v1/flows/{flow}/executions", json=payload if payload is not None else {},
                           headers=headers)
    assert response.status_code == 202, _body(response)
    return str(_body(response)["executionName"])


@pytest.fixture(scope="session")
def deploy_flow() -> Callable[..., dict[str, Any]]:
    """`deploy_flow(client, name, definition, **config)`: PUT the flow (definition as YAML text or a dict)."""
    return _deploy_flow


@pytest.fixture(scope="session")
def start_execution() -> Callable[..., str]:
    """`start_execution(client, flow, payload=None, name=None)` → the name of the started execution."""
    return _start_execution


@pytest.fixture(scope="session")
def wait_for_execution() -> Callable[..., dict[str, Any]]:
    """`wait_for_execution(client, flow, name, statuses, timeout_s=60)` → the execution (GET …) once its status is
    one of `statuses`."""
    def wait(client: Any, flow: str, name: str, statuses: set[str], timeout_s: float = 60.0) -> dict[str, Any]:
        def read() -> dict[str, Any]:
            return dict(_body(client.get(f"/v1/flows/{flow}/executions/{name}")))

        return support.eventually(read, until=lambda e: e.get("status") in statuses, timeout_s=timeout_s,
                                  what=f"execution {name} of {flow} to reach {sorted(statuses)}")

    return wait


@pytest.fixture(scope="session")
def statuses() -> Callable[[Services, str, str], list[str]]:
    """`statuses(services, function, invocation_id)`: the statuses its transitions went to, oldest first."""
    def statuses(services: Services, function: str, invocation_id: str) -> list[str]:
        inv = services.ledger.get_invocation(function, invocation_id)
        return [t.to_status.value for t in services.ledger.transitions(inv.pk)]

    return statuses


# --- backends -----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session", params=["embedded", "postgres"])
def backend(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Backend]:
    tmp = tmp_path_factory.mktemp(request.param)
    b = support.embedded_backend(tmp) if request.param == "embedded" else support.postgres_backend(tmp)
    yield from support.migrated(b)


@pytest.fixture(scope="session")
def new_backend(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[..., Backend]]:
    """`new_backend("postgres" | "embedded", **settings)`: a migrated backend of its own (not parametrized), dropped
    at the end of the session."""
    made: list[Iterator[Backend]] = []

    def new(kind: str, **settings: Any) -> Backend:
        tmp = tmp_path_factory.mktemp(kind)
        b = support.postgres_backend(tmp, **settings) if kind == "postgres" else support.embedded_backend(
            tmp, **settings)
        made.append(support.migrated(b))
        return next(made[-1])

    yield new
    for lifetime in made:
        next(lifetime, None)


@pytest.fixture
def empty_postgres_url() -> Iterator[str]:
    """An empty Postgres database of this test's own (no schema), dropped afterwards."""
    url, drop = support.create_postgres_database("ts_mig")
    yield url
    drop()


@pytest.fixture(scope="session")
def services(backend: Backend) -> Iterator[Services]:
    s = Services.build(backend.settings)
    yield s
    s.close()


@pytest.fixture(scope="session")
def app_client(backend: Backend) -> FlaskClient:
    return create_app(backend.settings).test_client()


@pytest.fixture
def fn_name() -> str:
    """A fresh function name per test, so tests sharing a ledger never see each other's invocations."""
    return f"fn_{uuid.uuid4().hex[:12]}"


# --- processes ----------------------------------------------------------------------------------------------------
@pytest.fixture(scope="session")
def launch(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Launcher]:
    """Starts `taskservice` processes on a backend of the caller's choosing: `launch.worker(backend, 2)`,
    `.relay(backend)`, `.ingest(backend)`, `.api(backend)`. Stop them when done; what is left runs to the session's
    end."""
    launcher = Launcher(tmp_path_factory.mktemp("processes"))
    yield launcher
    launcher.stop_all()


@pytest.fixture
def start_worker(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """`start_worker(concurrency=2, **settings)`: a worker on this test's backend, stopped after the test."""
    launcher = Launcher(tmp_path)
    yield lambda concurrency=2, **overrides: launcher.worker(backend, concurrency, **overrides)
    launcher.stop_all()


@pytest.fixture
def start_relay(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., RelayProcess]]:
    launcher = Launcher(tmp_path)
    yield lambda **overrides: launcher.relay(backend, **overrides)
    launcher.stop_all()


@pytest.fixture
def start_engine(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., support.EngineProcess]]:
    """`start_engine(**settings)`: `taskservice engine` (the flow engine) on this test's backend."""
    launcher = Launcher(tmp_path)
    yield lambda **overrides: launcher.engine(backend, **overrides)
    launcher.stop_all()


@pytest.fixture
def own_stack(backend: Backend, new_backend: Callable[..., Backend], tmp_path: Path) -> Iterator[support.OwnStack]:
    """A fresh backend of this test's kind with its own 2-slot worker and only the engines the test starts."""
    stack = support.OwnStack(new_backend(backend.name), Launcher(tmp_path))
    yield stack
    stack.close()


@pytest.fixture
def start_ingest(backend: Backend, kafka_broker: KafkaBroker,
                 tmp_path: Path) -> Iterator[Callable[..., IngestProcess]]:
    """`start_ingest(**settings)`: `taskservice ingest` on this test's backend, reading the session's broker unless
    `kafka_bootstrap` says otherwise."""
    launcher = Launcher(tmp_path)
    yield lambda **overrides: launcher.ingest(backend, **{"kafka_bootstrap": kafka_broker.bootstrap, **overrides})
    launcher.stop_all()


@pytest.fixture
def start_api(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., ApiProcess]]:
    """`start_api(workers=2, **settings)`: the real API under gunicorn, answering /healthz; `.base` is its URL."""
    launcher = Launcher(tmp_path)
    yield lambda workers=2, **overrides: launcher.api(backend, workers=workers, **overrides)
    launcher.stop_all()


@pytest.fixture
def start_health_worker(tmp_path: Path) -> Iterator[Callable[..., support.HealthWorker]]:
    """`start_health_worker(backend, **settings)`: a one-slot worker with `--health-port` on a backend of the caller's
    choosing; `.probe(path)`, `.wait_probe(path, status)`. Stopped after the test."""
    launcher = Launcher(tmp_path)
    yield launcher.health_worker
    launcher.stop_all()


@pytest.fixture
def start_dev(tmp_path: Path) -> Iterator[Callable[..., support.DevProcess]]:
    """`start_dev(*flags, program=None, cwd=repo, env=None)`: `taskservice dev` on a free port and a fresh data dir,
    answering /healthz (`program`: how to run another `taskservice`, e.g. an installed one). `.base`, `.proc`,
    `.log_path`, `.lines()`; stopped (with the children it names) after the test."""
    started: list[support.DevProcess] = []

    def start(*flags: str, **options: Any) -> support.DevProcess:
        n = len(started)
        started.append(support.DevProcess(tmp_path / f"dev-{n}.log", tmp_path / f"dev-data-{n}", *flags, **options))
        return started[-1]

    yield start
    for dev in started:
        dev.stop()


@pytest.fixture(scope="session")
def shared_worker(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    launcher = Launcher(tmp_path_factory.mktemp("shared-worker"))
    yield launcher.worker(backend, 2)
    launcher.stop_all()


@pytest.fixture(scope="session")
def settle() -> Callable[[WorkerProcess, Services, str], None]:
    """`settle(worker, services, function)`: wait until `worker` has handled every doorbell rung on `services`' queue
    before now. A sentinel invocation of `function` (its handler must succeed on `{}`) is submitted behind them; once
    it has succeeded and the worker has nothing in flight, everything queued before it was handled. Meant for a
    worker that is the only consumer of its queue."""
    def settle(worker: WorkerProcess, services: Services, function: str) -> None:
        sentinel = services.submitter.submit(function, {}).invocation_id
        _wait_for_status(services, function, sentinel, {"Succeeded"})
        support.eventually(worker.doorbells, until=lambda _: worker.idle(),
                           what=f"{worker.log_path.name} to finish every doorbell it received")

    return settle


# --- destinations and brokers -------------------------------------------------------------------------------------
@pytest.fixture
def own_kafka_broker(tmp_path: Path) -> Iterator[KafkaBroker]:
    """A Kafka broker of this test's own, for stopping and restarting without disturbing the session's broker."""
    broker = KafkaBroker(log_dir=tmp_path)
    try:
        broker.start()
    except Exception as exc:  # BrokerFailed carries its output; no binary or wheel fails loudly too
        pytest.fail(f"the Tansu Kafka broker could not start: {exc}", pytrace=False)
    yield broker
    broker.stop()


@pytest.fixture
def tcp_relay() -> Iterator[Callable[[], TcpRelay]]:
    """`tcp_relay()`: a new TCP relay (`.forward(listen_host, listen_port, target_host, target_port)` → the port it
    listens on; `.close()` drops every listener and connection, as a cut link would). Closed after the test."""
    made: list[TcpRelay] = []

    def new() -> TcpRelay:
        made.append(TcpRelay())
        return made[-1]

    yield new
    for relay in made:
        relay.close()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    """A real HTTP server on 127.0.0.1 that answers 200 and keeps every request it receives."""
    with HttpReceiver() as receiver:
        yield receiver


@pytest.fixture(scope="session")
def drain_queue() -> Callable[..., list[dict[str, Any]]]:
    """`drain_queue(settings, name, expected, timeout_s=60)`: the records a queue: destination holds, consumed like
    a real consumer would, until `expected` distinct ones came and the queue stayed quiet for a moment (so duplicates
    are counted too)."""
    from kombu import Connection, Consumer

    from taskservice.broker import broker_options
    from taskservice.destinations.queue import record_queue

    def drain(settings: Any, name: str, expected: int, timeout_s: float = 60) -> list[dict[str, Any]]:
        url, options = broker_options(settings)
        got: list[dict[str, Any]] = []

        def on_message(body: Any, message: Any) -> None:
            got.append(body)
            message.ack()

        def drained() -> tuple[bool, int]:
            """Take what the queue holds (up to 1,000 deliveries a probe, so that the deadline is still looked at):
            whether it then stayed quiet for 0.5 s, and how many distinct records came so far. One delivery a probe
            made 1,000 records cost 50 s of probe intervals."""
            quiet = False
            for _ in range(1000):
                try:
                    conn.drain_events(timeout=0.5)
                except TimeoutError:
                    quiet = True
                    break
            return quiet, len({r["requestContext"]["requestId"] for r in got})

        with Connection(url, transport_options=options) as conn:
            with Consumer(conn.default_channel, queues=[record_queue(name)], callbacks=[on_message], accept=["json"]):
                support.eventually(drained, until=lambda seen: seen[0] and seen[1] >= expected, timeout_s=timeout_s,
                                   what=f"{expected} distinct records on queue {name!r}, then quiet")
        return got

    return drain


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Tests that take the machine's Postgres and RabbitMQ away for a while (marked chaos) run after all others,
    in their own order: the rest of the suite should not have to ride out their faults."""
    items.sort(key=lambda item: item.get_closest_marker("chaos") is not None)
