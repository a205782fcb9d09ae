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

from tests.support import ApiProcess, Backend, Launcher


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
