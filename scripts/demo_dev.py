"""`taskservice dev` for the demo scripts: started in its own session, waited for until it answers /healthz, and
stopped with its whole group when the demo ends (also on error or Ctrl-C)."""
from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


@dataclass(frozen=True)
class DevSpot:
    """Where a demo's `taskservice dev` runs: a fresh data dir, a free port, and the environment for it and the CLI."""

    data_dir: Path
    port: int
    base: str
    env: dict[str, str]


def dev_spot(prefix: str, **settings: str) -> DevSpot:
    """A fresh data dir and free port; `settings` are extra TASKSERVICE_* variables (without the prefix)."""
    data_dir = Path(tempfile.mkdtemp(prefix=prefix))
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    base = f"http://127.0.0.1:{port}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}
    env.update({f"TASKSERVICE_{k.upper()}": v for k, v in settings.items()})
    env.update(TASKSERVICE_API_URL=base, TASKSERVICE_DATA_DIR=str(data_dir), PYTHONPATH=str(REPO))
    return DevSpot(data_dir, port, base, env)


@contextlib.contextmanager
def running_dev(spot: DevSpot, *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    base = spot.base
    dev = subprocess.Popen([sys.executable, "-m", "taskservice.cli", "dev", "--port", str(spot.port), *flags],
                           env=spot.env, cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL,
                           stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 60
        while True:
            with contextlib.suppress(requests.ConnectionError):
                if requests.get(f"{base}/healthz", timeout=1).ok:
                    break
            if time.monotonic() > deadline or dev.poll() is not None:
                raise SystemExit("taskservice dev did not start")
            time.sleep(0.2)
        yield dev
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(dev.pid, signal.SIGTERM)
        dev.wait(30)
