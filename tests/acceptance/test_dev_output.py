"""What `taskservice dev` prints: its addresses last and nothing of Celery's startup noise unless --verbose."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import requests

from tests.conftest import REPO, free_port, process_gone, wait_for_health

CELERY_BANNER = ("[config]", "[queues]", ".> transport:", "-------------- ")
ROOT_WARNING = "superuser privileges"


@dataclass
class Dev:
    base: str
    log: Path

    def output(self) -> list[str]:
        return [line for line in self.log.read_text().splitlines() if line.strip()]


@contextlib.contextmanager
def running_dev(tmp_path: Path, *flags: str) -> Iterator[Dev]:
    """`taskservice dev` in its own session on a free port and a fresh data dir, answering /healthz. Stopped with
    SIGTERM to its process group; the children it names in its banner are killed too if they outlive it."""
    port = free_port()
    log_path = tmp_path / "dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "taskservice.cli", "dev", "--port", str(port), "--data-dir",
                                 str(tmp_path / "data"), *flags], cwd=REPO, env=env, stdout=log,
                                stderr=subprocess.STDOUT, start_new_session=True)
    try:
        base = f"http://127.0.0.1:{port}"
        wait_for_health(base, proc, log_path, timeout_s=120)
        yield Dev(base, log_path)
    finally:
        children = [int(pid) for pid in re.findall(r", pid (\d+)$", log_path.read_text(), re.MULTILINE)]
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=60)
        for pid in children:
            if not process_gone(pid, grace_s=0):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)


def banner_is_last(dev: Dev) -> list[str]:
    """The lines from dev's own banner to the end of its output, checked to be the banner and nothing else."""
    lines = dev.output()
    start = lines.index("taskservice dev is running")
    banner = lines[start:]
    assert banner[-1].startswith("  try:"), lines[-15:]
    assert all(line.startswith("  ") for line in banner[1:]), banner
    assert f"  health    {dev.base}/healthz" in banner and f"  console   {dev.base}/" in banner
    return lines[:start]


def test_dev_prints_its_addresses_last_and_no_celery_banner(tmp_path: Path) -> None:
    with running_dev(tmp_path) as dev:
        before = banner_is_last(dev)
        output = "\n".join(dev.output())
        assert not any(mark in output for mark in CELERY_BANNER), output
        assert ROOT_WARNING not in output and "Warning" not in output, output
        assert before == [], before  # nothing at all before the banner
        # The worker behind the quiet output is up and runs work, and running it adds nothing to the screen.
        requests.put(f"{dev.base}/v1/functions/echo", json={"handler": "workers.handlers.echo:handler"},
                     timeout=10).raise_for_status()
        done = subprocess.run([sys.executable, "-m", "taskservice.cli", "invoke", "echo", "-e", '{"x": 1}',
                               "--invocation-id", "quiet_1", "--wait"], cwd=REPO, text=True, capture_output=True,
                              timeout=60, env={**os.environ, "TASKSERVICE_API_URL": dev.base})
        assert done.returncode == 0 and "Succeeded" in done.stdout, done.stdout + done.stderr
        banner_is_last(dev)


def test_dev_verbose_shows_celery_banner_and_warnings_before_its_own(tmp_path: Path) -> None:
    with running_dev(tmp_path, "--verbose") as dev:
        before = "\n".join(banner_is_last(dev))
        assert all(mark in before for mark in CELERY_BANNER), before
        assert "ready." in before  # the children's INFO logs, the worker's readiness among them
        if os.geteuid() == 0:  # Celery warns only when it runs as root (or in a sudo/wheel group)
            assert ROOT_WARNING in before, before


def test_dev_sigkilled_leaves_no_process_behind(tmp_path: Path) -> None:
    """Its worker (with its pool), relay and ingest run in sessions of their own, so a kill of dev's group would
    not reach them; the kernel's parent-death signal does, even when dev itself gets SIGKILL."""
    port = free_port()
    log_path = tmp_path / "dev.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    with open(log_path, "wb") as log:
        proc = subprocess.Popen([sys.executable, "-m", "taskservice.cli", "dev", "--port", str(port), "--data-dir",
                                 str(tmp_path / "data")], cwd=REPO, env=env, stdout=log, stderr=subprocess.STDOUT,
                                start_new_session=True)
    descendants: list[psutil.Process] = []
    try:
        wait_for_health(f"http://127.0.0.1:{port}", proc, log_path, timeout_s=120)
        descendants = psutil.Process(proc.pid).children(recursive=True)
        assert len(descendants) >= 3, descendants  # worker, its pool, relay
        proc.kill()  # SIGKILL to dev alone: no chance to stop anything itself
        proc.wait()
        left = [p.pid for p in descendants if not process_gone(p.pid, grace_s=30)]
        assert left == [], f"still running after dev was killed: {left}\n{log_path.read_text()[-3000:]}"
    finally:
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
