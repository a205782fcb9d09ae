"""`taskservice dev` for the demo scripts: started in its own session, waited for until it answers /healthz, and
stopped with its whole group when the demo ends (also on error or Ctrl-C)."""
from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import requests

REPO = Path(__file__).resolve().parent.parent


@contextlib.contextmanager
def running_dev(base: str, port: int, env: dict[str, str], *flags: str) -> Iterator[subprocess.Popen[bytes]]:
    dev = subprocess.Popen([sys.executable, "-m", "taskservice.cli", "dev", "--port", str(port), *flags], env=env,
                           cwd=REPO, start_new_session=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
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
