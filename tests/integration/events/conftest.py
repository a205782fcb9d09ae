"""Fixtures of the event-source tests. Helpers that tests/conftest.py still offers as plain functions are wrapped
here as fixtures (`deploy_fn`, `await_status`), so these tests only ever see fixtures and switching them to the
shared fixtures later touches this file alone."""
from __future__ import annotations

import contextlib
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from taskservice.services import Services
from tests.conftest import Backend, ServiceProcess, deploy, free_port, wait_for_health, wait_for_status


@pytest.fixture
def deploy_fn(app_client: FlaskClient) -> Callable[..., dict[str, Any]]:
    def _deploy(name: str, handler: str, **config: Any) -> dict[str, Any]:
        return deploy(app_client, name, handler, **config)

    return _deploy


@pytest.fixture
def await_status(services: Services) -> Callable[..., Any]:
    def _await(function: str, invocation_id: str, statuses: set[str], timeout_s: float = 30.0) -> Any:
        return wait_for_status(services, function, invocation_id, statuses, timeout_s)

    return _await


@pytest.fixture
def eventually_true() -> Callable[..., Any]:
    """Poll `check` until it returns something truthy (and return that), or fail after `timeout_s`."""
    def _eventually(check: Callable[[], Any], timeout_s: float = 30.0, what: str = "condition") -> Any:
        deadline = time.monotonic() + timeout_s
        while True:
            value = check()
            if value:
                return value
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} not met within {timeout_s}s (last: {value!r})")
            time.sleep(0.05)

    return _eventually


class ApiProcess(ServiceProcess):
    ready_marks = (b"Listening at", b"Booting worker")


@pytest.fixture
def live_api(backend: Backend, tmp_path: Path) -> Iterator[str]:
    """`taskservice api` (gunicorn, auth on) as production runs it; yields its base URL."""
    port = free_port()
    server = ApiProcess(backend, ["api", "--port", str(port), "--workers", "2"], tmp_path / "api.log", auth=True)
    base = f"http://127.0.0.1:{port}"
    try:
        wait_for_health(base, server.proc, server.log_path)
        yield base
    finally:
        server.stop()


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
        with contextlib.suppress(subprocess.TimeoutExpired, ProcessLookupError):
            proc.stop()


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    """moto's S3 API server (the tests' MinIO), shared with the media suite's way of starting it."""
    from tests.integration.media.conftest import _moto_server

    yield from _moto_server()


@pytest.fixture
def run_cli(backend: Backend) -> Callable[..., Any]:
    """Run a `taskservice` command in-process with the backend's settings in its environment."""
    from click.testing import CliRunner

    from taskservice.cli import cli

    def _run(*args: str, **overrides: Any) -> Any:
        env = {k: v for k, v in backend.env(**overrides).items() if k.startswith("TASKSERVICE_")}
        return CliRunner().invoke(cli, list(args), env=env, catch_exceptions=False)

    return _run
