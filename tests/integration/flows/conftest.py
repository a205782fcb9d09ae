"""Fixtures for the flow tests that go through the real HTTP API: one `taskservice api` per module and backend
(a gunicorn start costs seconds of a shared CPU; the tests only read and write flows of their own names), and the
`taskservice` CLI run as a person runs it."""
from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.support import ApiProcess, Backend, EngineProcess, Launcher, WorkerProcess


# The session's shared worker would outlive this package and run invocations that later tests (the console's) expect
# to stay Enqueued: the flow tests get a worker and an engine of their own that end with the package.
@pytest.fixture(scope="package")
def shared_worker(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[WorkerProcess]:
    launcher = Launcher(tmp_path_factory.mktemp("flow-worker"))
    yield launcher.worker(backend, 2)
    launcher.stop_all()


@pytest.fixture(scope="package")
def shared_engine(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[EngineProcess]:
    launcher = Launcher(tmp_path_factory.mktemp("flow-engine"))
    yield launcher.engine(backend)
    launcher.stop_all()


@pytest.fixture(scope="module")
def live_api(backend: Backend, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ApiProcess]:
    """`taskservice api` (one gunicorn worker) on this module's backend, answering /healthz."""
    launcher = Launcher(tmp_path_factory.mktemp("flow-api"))
    yield launcher.api(backend, workers=1)
    launcher.stop_all()


@pytest.fixture
def run_cli(live_api: ApiProcess, repo_dir: Path) -> Callable[..., subprocess.CompletedProcess[str]]:
    """`run_cli(*args, timeout_s=90)`: `taskservice <args>` in a subprocess against the live API (no terminal, so
    --wait prints one line per change)."""
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")},
           "TASKSERVICE_API_URL": live_api.base, "NO_COLOR": "1"}

    def run(*args: str, timeout_s: float = 90) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "taskservice.cli", *args], cwd=repo_dir, env=env, text=True,
                              capture_output=True, timeout=timeout_s)

    return run
