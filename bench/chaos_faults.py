"""Fault injection on the machine's own PostgreSQL cluster and RabbitMQ node (design §9), for bench_chaos.py.

Each fault is recorded with when it began and when the service answered again; `ensure_running()` brings both back
and is called in the bench's `finally`, whatever happened.
"""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from bench.procs import BenchError


def pg_version() -> str:
    """The newest cluster version under /etc/postgresql (15 on these machines)."""
    root = Path("/etc/postgresql")
    versions = sorted((p.name for p in root.iterdir()), key=lambda v: float(v)) if root.is_dir() else []
    if not versions:
        raise BenchError("no PostgreSQL cluster under /etc/postgresql: the chaos bench restarts the machine's own")
    return versions[-1]


def accepts(port: int, host: str = "127.0.0.1") -> bool:
    try:
        socket.create_connection((host, port), timeout=1).close()
        return True
    except OSError:
        return False


def _wait_accepts(port: int, what: str, timeout_s: float = 60.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not accepts(port):
        if time.monotonic() > deadline:
            raise BenchError(f"{what} did not accept connections on port {port} within {timeout_s:.0f}s")
        time.sleep(0.05)


def _run(argv: list[str]) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({done.returncode}): {done.stdout}{done.stderr}")


class ServiceFaults:
    def __init__(self, pg_port: int = 5432, amqp_port: int = 5672) -> None:
        self.pg_port = pg_port
        self.amqp_port = amqp_port
        self._pg: str | None = None

    def _pg_ctl(self, *args: str) -> None:
        if self._pg is None:
            self._pg = pg_version()
        _run(["pg_ctlcluster", "--skip-systemctl-redirect", self._pg, "main", *args])

    def restart_postgres(self) -> None:
        """`pg_ctlcluster … restart -m fast`, returning once it accepts connections again."""
        self._pg_ctl("restart", "-m", "fast")
        _wait_accepts(self.pg_port, "PostgreSQL")

    def restart_rabbitmq(self) -> None:
        """`rabbitmqctl stop_app`, then `start_app` and `await_startup` (the Erlang node stays up)."""
        _run(["rabbitmqctl", "stop_app"])
        self.start_rabbitmq()

    def start_rabbitmq(self) -> None:
        _run(["rabbitmqctl", "start_app"])
        _run(["rabbitmqctl", "await_startup"])
        _wait_accepts(self.amqp_port, "RabbitMQ")

    def ensure_running(self) -> None:
        """Bring both services back if a fault left either down; each is tried even when the other fails."""
        problems = []
        if not accepts(self.pg_port):
            try:
                self._pg_ctl("start")
                _wait_accepts(self.pg_port, "PostgreSQL")
            except Exception as exc:
                problems.append(f"PostgreSQL: {exc}")
        if not accepts(self.amqp_port):
            try:
                self.start_rabbitmq()
            except Exception as exc:
                problems.append(f"RabbitMQ: {exc}")
        if problems:
            print("warning: could not bring a service back: " + "; ".join(problems))
