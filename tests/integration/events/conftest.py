"""Fixtures of the event-source tests, built on the shared fixtures of tests/conftest.py (`deploy`,
`wait_for_status`, `eventually`, `start_api`, ...): thin wrappers that bind this test's app client and services, an
S3 API server, and `taskservice scheduler` / `consume` processes."""
from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from flask.testing import FlaskClient

from taskservice.services import Services
from tests.support import ServiceProcess

if TYPE_CHECKING:
    from tests.support import ApiProcess, Backend, WorkerProcess


@pytest.fixture
def deploy_fn(app_client: FlaskClient, deploy: Callable[..., dict[str, Any]]) -> Callable[..., dict[str, Any]]:
    """`deploy_fn(name, handler, **config)` on this test's backend."""
    return lambda name, handler, **config: deploy(app_client, name, handler, **config)


@pytest.fixture
def await_status(services: Services, wait_for_status: Callable[..., Any]) -> Callable[..., Any]:
    """`await_status(function, invocation_id, {"Succeeded"}, timeout_s=30)` on this test's ledger."""
    return lambda function, invocation_id, statuses, timeout_s=30.0: wait_for_status(
        services, function, invocation_id, statuses, timeout_s)


@pytest.fixture
def eventually_true(eventually: Callable[..., Any]) -> Callable[..., Any]:
    """`eventually_true(probe, timeout_s, what)`: the shared `eventually`, positional as these tests call it."""
    return lambda probe, timeout_s=30.0, what="condition": eventually(probe, what=what, timeout_s=timeout_s)


@pytest.fixture
def live_api(start_api: Callable[..., ApiProcess]) -> str:
    """`taskservice api` (gunicorn, auth on) as production runs it; its base URL."""
    return start_api(auth=True).base


@pytest.fixture
def worker(start_worker: Callable[..., WorkerProcess]) -> WorkerProcess:
    """A worker on the backend's queue for this test only: the session's shared worker would keep running under the
    test modules collected after this directory, which expect no worker on that queue (tests/integration/test_c…)."""
    return start_worker()


class EventProcess(ServiceProcess):
    ready_marks = (b"started",)


@pytest.fixture
def start_service(backend: Backend, tmp_path: Path) -> Iterator[Callable[..., ServiceProcess]]:
    """Start `taskservice <command>` (scheduler, consume) against the backend; stopped at the end."""
    started: list[ServiceProcess] = []

    def start(*args: str, **overrides: Any) -> ServiceProcess:
        proc = EventProcess(backend, [*args, "--loglevel", "INFO"], tmp_path / f"{args[0]}-{len(started)}.log",
                            **overrides)
        started.append(proc)
        return proc

    yield start
    for proc in started:
        proc.stop()


@pytest.fixture(scope="session")
def s3_url(free_port: Callable[[], int]) -> Iterator[str]:
    """moto's S3 API server over HTTP (the tests' MinIO); a missing moto fails the run."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.fail(f"moto[server] is not installed ({exc}); run `make install`", pytrace=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"s3://testing:testing@127.0.0.1:{port}?secure=false&region=us-east-1"
    server.stop()


@pytest.fixture
def run_cli(backend: Backend) -> Callable[..., Any]:
    """Run a `taskservice` command in-process with the backend's settings in its environment."""
    from click.testing import CliRunner

    from taskservice.cli import cli

    def _run(*args: str, **overrides: Any) -> Any:
        env = {k: v for k, v in backend.env(**overrides).items() if k.startswith("TASKSERVICE_")}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return _run
