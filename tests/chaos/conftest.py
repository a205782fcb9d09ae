"""Fault injection on the machine's own Postgres and RabbitMQ (design §9): stop, start and restart them, always
bringing them back in a finalizer, also when the test fails."""
from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

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
    import socket

    try:
        socket.create_connection(("127.0.0.1", port), timeout=1).close()
        return True
    except OSError:
        return False


@pytest.fixture
def postgres() -> Iterator[Postgres]:
    if not PG_VERSION:
        pytest.fail("no PostgreSQL cluster under /etc/postgresql: these tests stop and start the machine's own")
    pg = Postgres()
    yield pg
    pg.ensure_running()


@pytest.fixture
def rabbitmq() -> Iterator[RabbitMQ]:
    rabbit = RabbitMQ()
    yield rabbit
    rabbit.ensure_running()


@pytest.fixture
def fault_clock() -> Iterator[list[tuple[str, float]]]:
    """Where a test notes each fault as (what, monotonic time); printed at the end for the log."""
    faults: list[tuple[str, float]] = []
    yield faults
    if faults:
        start = faults[0][1]
        print("faults:", ", ".join(f"{what} at +{at - start:.1f}s" for what, at in faults))

