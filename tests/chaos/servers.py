"""The machine's own Postgres and RabbitMQ, stopped and started for fault injection (design §9). Used through the
fixtures of tests/chaos/conftest.py, which always bring them back."""
from __future__ import annotations

import socket
import subprocess
from pathlib import Path

from tests import support

PG_VERSION = sorted(p.name for p in Path("/etc/postgresql").iterdir())[-1] if Path("/etc/postgresql").is_dir() else ""


class Postgres:
    """The machine's PostgreSQL cluster, by pg_ctlcluster."""

    def _ctl(self, *args: str) -> None:
        subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", PG_VERSION, "main", *args], check=True,
                       capture_output=True, timeout=120)

    def stop(self) -> None:
        self._ctl("stop", "-m", "fast")

    def start(self) -> None:
        self._ctl("start")
        support.eventually(lambda: _accepts(5432), what="PostgreSQL to accept connections", timeout_s=60)

    def restart(self) -> None:
        self._ctl("restart", "-m", "fast")
        support.eventually(lambda: _accepts(5432), what="PostgreSQL to accept connections", timeout_s=60)

    def ensure_running(self) -> None:
        if not _accepts(5432):
            self.start()


class RabbitMQ:
    """The machine's RabbitMQ node: the application stopped and started, the Erlang node left running."""

    def _ctl(self, *args: str) -> None:
        subprocess.run(["rabbitmqctl", *args], check=True, capture_output=True, timeout=120)

    def stop_app(self) -> None:
        self._ctl("stop_app")

    def start_app(self) -> None:
        self._ctl("start_app")
        self._ctl("await_startup")

    def ensure_running(self) -> None:
        if not _accepts(5672):
            self.start_app()


def _accepts(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False
