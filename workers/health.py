"""A worker's own health on a tiny HTTP port, for probes that must not cost a Celery broadcast (`celery inspect ping`
goes through the broker to every worker; this answers from the process's own state).

    GET /readyz   200 when the worker can take work now: its consumer is connected to the broker, the ledger
                  answered a `SELECT 1` within the last few seconds, its reaper thread is alive, and it is not
                  shutting down (draining). 503 otherwise.
    GET /healthz  200 unless restarting the process would help: its reaper thread died, or its consumer has been
                  without a broker connection for longer than `dead_after_s` (a draining worker stays healthy).
                  A ledger outage is reported but never fails liveness: restarting every worker does not bring a
                  database back, and running attempts outlive an outage shorter than their lease.

Both answer JSON with every check, so `curl worker:PORT/readyz` tells an operator what is wrong.
The state comes from Celery itself: a consumer bootstep that Celery starts when the consumer is connected and
consuming and stops when the connection is lost, and the `worker_shutting_down` signal.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from celery import Celery, bootsteps
from celery.signals import worker_process_init, worker_shutting_down
from sqlalchemy import Engine, text

log = logging.getLogger(__name__)


@dataclass
class WorkerHealth:
    """What the probes read. Written by Celery's threads and the ledger checker, read by the HTTP threads; every
    field is a single reference swap, so no lock is needed."""

    engine: Callable[[], Engine]
    reaper_alive: Callable[[], bool]
    ledger_interval_s: float = 2.0
    dead_after_s: float = 60.0
    started_at: float = field(default_factory=time.monotonic)
    consumer: Any = None  # celery.worker.consumer.Consumer while connected
    connected_at: float | None = None
    disconnected_at: float | None = None
    ledger_ok_at: float | None = None
    ledger_error: str = "not checked yet"
    draining: bool = False
    _stop: threading.Event = field(default_factory=threading.Event)

    # --- what Celery tells us -------------------------------------------------------------------------------------
    def consumer_started(self, consumer: Any) -> None:
        self.consumer, self.connected_at, self.disconnected_at = consumer, time.monotonic(), None

    def consumer_stopped(self) -> None:
        if self.consumer is not None:
            self.consumer, self.disconnected_at = None, time.monotonic()

    def shutting_down(self, **_: Any) -> None:
        self.draining = True

    # --- the ledger, checked in the background so a hung database never hangs a probe ----------------------------
    def check_ledger_once(self) -> None:
        try:
            with self.engine().connect() as conn:
                conn.execute(text("SELECT 1"))
        except Exception as exc:  # report it; the probe decides
            self.ledger_error = f"{type(exc).__name__}: {str(exc).splitlines()[0][:200] if str(exc) else ''}"
        else:
            self.ledger_ok_at, self.ledger_error = time.monotonic(), ""

    def _check_ledger_forever(self) -> None:
        while True:
            self.check_ledger_once()
            if self._stop.wait(self.ledger_interval_s):
                return

    # --- the verdicts ---------------------------------------------------------------------------------------------
    def _consumer_connected(self) -> bool:
        consumer = self.consumer
        if consumer is None:
            return False
        try:
            connection = consumer.connection
            return connection is not None and bool(connection.connected)
        except Exception:  # a connection torn down under us counts as not connected
            return False

    def report(self) -> tuple[bool, bool, dict[str, Any]]:
        """(ready, healthy, the checks as JSON)."""
        now = time.monotonic()
        connected = self._consumer_connected()
        since = self.disconnected_at or self.started_at
        ledger_age = None if self.ledger_ok_at is None else now - self.ledger_ok_at
        ledger_ok = ledger_age is not None and ledger_age <= 3 * self.ledger_interval_s + 1
        reaper = self.reaper_alive()
        checks: dict[str, Any] = {
            "consumer": {"ok": connected,
                         **({} if connected else {"disconnected_for_s": round(now - since, 1)})},
            "ledger": {"ok": ledger_ok, "checked_s_ago": None if ledger_age is None else round(ledger_age, 1),
                       **({} if ledger_ok else {"error": self.ledger_error or "no answer"})},
            "reaper": {"ok": reaper},
            "draining": self.draining,
        }
        ready = connected and ledger_ok and reaper and not self.draining
        healthy = reaper and (connected or self.draining or now - since < self.dead_after_s)
        return ready, healthy, checks

    # --- the port -------------------------------------------------------------------------------------------------
    def serve(self, host: str, port: int) -> ThreadingHTTPServer:
        health = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - the http.server protocol
                ready, healthy, checks = health.report()
                if self.path.split("?", 1)[0] == "/readyz":
                    ok = ready
                elif self.path.split("?", 1)[0] == "/healthz":
                    ok = healthy
                else:
                    self.send_error(404, "try /readyz or /healthz")
                    return
                body = json.dumps({"status": "ok" if ok else "unavailable", "ready": ready, "healthy": healthy,
                                   "checks": checks}).encode()
                self.send_response(200 if ok else 503)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
                """Probes come every few seconds: not worth a log line each."""

        server = ThreadingHTTPServer((host, port), Handler)
        server.daemon_threads = True
        threading.Thread(target=server.serve_forever, name="taskservice-health", daemon=True).start()
        threading.Thread(target=self._check_ledger_forever, name="taskservice-health-ledger", daemon=True).start()
        return server

    def stop(self) -> None:
        self._stop.set()


def install(app: Celery, health: WorkerHealth, *, host: str, port: int) -> ThreadingHTTPServer:
    """Serve health on host:port from this (the main) process and feed it Celery's consumer and shutdown events."""

    class ConsumerConnected(bootsteps.StartStopStep):
        """Started by Celery once the consumer consumes (and again after every reconnect), stopped when the
        connection is lost or the worker stops."""

        requires = ("celery.worker.consumer.tasks:Tasks",)

        def start(self, parent: Any) -> None:
            health.consumer_started(parent)

        def stop(self, parent: Any) -> None:
            health.consumer_stopped()

        def shutdown(self, parent: Any) -> None:
            health.consumer_stopped()

    app.steps["consumer"].add(ConsumerConnected)
    worker_shutting_down.connect(health.shutting_down, weak=False)
    server = health.serve(host, port)

    def close_inherited_socket(**_: Any) -> None:
        # A forked pool process inherits the listening socket; it must not keep the port bound after the worker.
        server.socket.close()

    worker_process_init.connect(close_inherited_socket, weak=False)
    log.info("health on http://%s:%d/readyz and /healthz", host, port)
    return server
