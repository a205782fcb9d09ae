"""What `taskservice dev` prints: its addresses last and nothing of Celery's startup noise unless --verbose."""
from __future__ import annotations

import contextlib
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import psutil
import requests

if TYPE_CHECKING:
    from tests.support import DevProcess

CELERY_BANNER = ("[config]", "[queues]", ".> transport:", "-------------- ")
ROOT_WARNING = "superuser privileges"


def banner_is_last(dev: DevProcess) -> list[str]:
    """The lines from dev's own banner to the end of its output, checked to be the banner and nothing else."""
    lines = dev.lines()
    start = lines.index("taskservice dev is running")
    banner = lines[start:]
    assert banner[-1].startswith("  try:"), lines[-15:]
    assert all(line.startswith("  ") for line in banner[1:]), banner
    assert f"  health    {dev.base}/healthz" in banner and f"  console   {dev.base}/" in banner
    return lines[:start]


def test_dev_prints_its_addresses_last_and_no_celery_banner(start_dev: Callable[..., DevProcess],
                                                            repo_dir: Path) -> None:
    dev = start_dev()
    before = banner_is_last(dev)
    output = "\n".join(dev.lines())
    assert not any(mark in output for mark in CELERY_BANNER), output
    assert ROOT_WARNING not in output and "Warning" not in output, output
    assert before == [], before  # nothing at all before the banner
    # The worker behind the quiet output is up and runs work, and running it adds nothing to the screen.
    requests.put(f"{dev.base}/v1/functions/echo", json={"handler": "workers.handlers.echo:handler"},
                 timeout=10).raise_for_status()
    done = subprocess.run([sys.executable, "-m", "taskservice.cli", "invoke", "echo", "-e", '{"x": 1}',
                           "--invocation-id", "quiet_1", "--wait"], cwd=repo_dir, text=True, capture_output=True,
                          timeout=60, env={**os.environ, "TASKSERVICE_API_URL": dev.base})
    assert done.returncode == 0 and "Succeeded" in done.stdout, done.stdout + done.stderr
    banner_is_last(dev)


def test_dev_verbose_shows_celery_banner_and_warnings_before_its_own(start_dev: Callable[..., DevProcess]) -> None:
    before = "\n".join(banner_is_last(start_dev("--verbose")))
    assert all(mark in before for mark in CELERY_BANNER), before
    assert "ready." in before  # the children's INFO logs, the worker's readiness among them
    if os.geteuid() == 0:  # Celery warns only when it runs as root (or in a sudo/wheel group)
        assert ROOT_WARNING in before, before


def test_dev_sigkilled_leaves_no_process_behind(start_dev: Callable[..., DevProcess],
                                                process_gone: Callable[..., bool]) -> None:
    """Its worker (with its pool), relay and ingest run in sessions of their own, so a kill of dev's group would
    not reach them; the kernel's parent-death signal does, even when dev itself gets SIGKILL."""
    dev = start_dev()
    descendants: list[psutil.Process] = []
    try:
        descendants = psutil.Process(dev.proc.pid).children(recursive=True)
        assert len(descendants) >= 3, descendants  # worker, its pool, relay
        dev.proc.kill()  # SIGKILL to dev alone: no chance to stop anything itself
        dev.proc.wait()
        left = [p.pid for p in descendants if not process_gone(p.pid, grace_s=30)]
        assert left == [], f"still running after dev was killed: {left}\n{dev.log_path.read_text()[-3000:]}"
    finally:
        for child in descendants:
            with contextlib.suppress(psutil.Error):
                child.kill()
