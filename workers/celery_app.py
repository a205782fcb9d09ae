"""The worker's Celery app: the shared broker config from taskservice.dispatch plus the task, per-process services
and the reaper."""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
from typing import Any

from celery import Celery
from celery.signals import worker_process_init, worker_ready, worker_shutdown

from taskservice.config import Settings
from taskservice.dispatch import Dispatcher, make_celery
from taskservice.services import Services
from workers.reaper import Reaper
from workers.runner import Runner
from workers.tasks import register_tasks

log = logging.getLogger(__name__)


class WorkerProcess:
    """Builds services lazily in each process: a forked pool child must not reuse its parent's connections."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery
        self._services: Services | None = None
        self._runner: Runner | None = None
        self._reaper: Reaper | None = None
        self._reaper_thread: threading.Thread | None = None

    @property
    def services(self) -> Services:
        if self._services is None:
            self._services = Services.build(self.settings, dispatcher=Dispatcher(self.celery))
        return self._services

    def runner(self) -> Runner:
        if self._runner is None:
            s = self.settings
            self._runner = Runner(self.services.ledger, self.services.dispatcher, self.services.submitter,
                                  worker_id=f"{socket.gethostname()}:{os.getpid()}", lease_s=s.lease_s,
                                  heartbeat_s=s.heartbeat_s, retry_base_s=s.retry_base_s, retry_max_s=s.retry_max_s,
                                  storage_url=s.resolved_storage_url, storage_endpoints=s.storage_endpoints)
        return self._runner

    def after_fork(self, **_: Any) -> None:
        if self._services is not None:
            self._services.engine.dispose(close=False)
        self._services = None
        self._runner = None

    def start_reaper(self, **_: Any) -> None:
        s = self.settings
        self._reaper = Reaper(self.services.ledger, self.services.dispatcher, interval_s=s.reaper_interval_s,
                              retention_s=s.retention_s, redispatch_after_s=s.redispatch_after_s)
        self._reaper_thread = self._reaper.start()
        log.info("reaper started: every %.1fs, lease %.1fs", s.reaper_interval_s, s.lease_s)

    def reaper_alive(self) -> bool:
        return self._reaper_thread is not None and self._reaper_thread.is_alive()

    def stop_reaper(self, **_: Any) -> None:
        if self._reaper is not None:
            self._reaper.stop()


def create_worker_app(settings: Settings) -> tuple[Celery, WorkerProcess]:
    app = make_celery(settings)
    process = WorkerProcess(settings, app)
    register_tasks(app, process.runner)
    worker_process_init.connect(process.after_fork, weak=False)
    worker_ready.connect(process.start_reaper, weak=False)
    worker_shutdown.connect(process.stop_reaper, weak=False)
    return app, process


def run_worker(settings: Settings, *, concurrency: int, loglevel: str = "INFO", name: str | None = None,
               health_port: int | None = None, health_host: str = "0.0.0.0") -> None:
    """Start a Celery prefork worker with the reaper beside it; blocks until the worker exits. With health_port, also
    answer /readyz and /healthz there from the worker's own state (workers/health.py)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # handlers in the working directory are importable, as in `taskservice dev`
    app, process = create_worker_app(settings)
    if health_port is not None:
        from workers.health import WorkerHealth, install

        install(app, WorkerHealth(engine=lambda: process.services.engine, reaper_alive=process.reaper_alive),
                host=health_host, port=health_port)
    argv = ["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "--pool=prefork",
            "--without-gossip", "--without-mingle", "--without-heartbeat", f"--queues={settings.queue}"]
    # Unique node names let several workers share one host (and one broker vhost) without clashing.
    argv.append(f"--hostname={name or f'taskservice-{os.getpid()}@%h'}")
    app.worker_main(argv=argv)
