"""The worker's Celery app: the shared broker config from taskservice.dispatch plus the task, per-process services
and the reaper."""
from __future__ import annotations

import logging
import os
import socket
import sys
import threading
import time
import warnings
from multiprocessing.sharedctypes import RawValue
from pathlib import Path
from typing import Any

from celery import Celery
from celery.exceptions import SecurityWarning
from celery.signals import worker_process_init, worker_ready, worker_shutdown, worker_shutting_down

from taskservice.config import Settings
from taskservice.dispatch import Dispatcher, make_celery
from taskservice.services import Services
from taskservice.storage.events import ObjectEvent
from workers.executors import ExecutorSlot, RecyclePolicy
from workers.reaper import Reaper
from workers.runner import Runner
from workers.tasks import register_tasks

log = logging.getLogger(__name__)

SHUTDOWN_CHECK_S = 0.25  # how long an idle worker's event loop sleeps at most before it looks for a SIGTERM


class WorkerProcess:
    """Builds services lazily in each process: a forked pool child must not reuse its parent's connections.

    Drain (design §6): SIGTERM makes Celery stop consuming and wait for running tasks; the main process then writes
    the drain deadline into shared memory the pool processes inherited, and each running attempt that is still going
    at that moment is killed and handed back to the ledger at once (no lease wait)."""

    def __init__(self, settings: Settings, celery: Celery) -> None:
        self.settings = settings
        self.celery = celery
        self._drain_at = RawValue("d", 0.0)  # wall-clock deadline, 0 while not draining; shared with pool children
        self._services: Services | None = None
        self._runner: Runner | None = None
        self._executors: ExecutorSlot | None = None
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
            self._runner = Runner(self.services.ledger, self.services.submitter,
                                  worker_id=f"{socket.gethostname()}:{os.getpid()}", lease_s=s.lease_s,
                                  heartbeat_s=s.heartbeat_s, retry_base_s=s.retry_base_s, retry_max_s=s.retry_max_s,
                                  storage_url=s.resolved_storage_url, storage_endpoints=s.storage_endpoints,
                                  shutting_down=self.shutting_down, draining=self.drain_time_is_up,
                                  storage_events=self._publish_storage_events, executors=self._executors)
        return self._runner

    def shutting_down(self) -> bool:
        return self._drain_at.value > 0

    def _publish_storage_events(self, events: list[ObjectEvent]) -> int:
        from taskservice.storage_events import StorageEvents

        return len(StorageEvents(self.services.triggers, self.services.submitter).publish(events).submitted)

    def drain_time_is_up(self) -> bool:
        deadline = self._drain_at.value
        return 0 < deadline <= time.time()

    def start_drain(self, sig: Any = None, how: str = "", **_: Any) -> None:
        """Celery began shutting down: running attempts get drain_s seconds to finish."""
        if self._drain_at.value == 0:
            self._drain_at.value = time.time() + self.settings.drain_s
            log.warning("%s shutdown (%s): no new invocations taken; running attempts get %.0fs to finish, then "
                        "are handed back to the ledger for another worker", how or "warm", sig or "signal",
                        self.settings.drain_s)

    def after_fork(self, **_: Any) -> None:
        if self._services is not None:
            self._services.engine.dispose(close=False)
        self._services = None
        self._runner = None
        self._executors = None
        s = self.settings
        if s.executor_max_attempts > 0:
            # Now, before this pool process opens a connection: the slot's zygote is forked from a clean process.
            self._executors = ExecutorSlot(RecyclePolicy(max_attempts=s.executor_max_attempts,
                                                         max_rss_bytes=s.executor_max_rss_mb * 1024 * 1024))

    def start_reaper(self, **_: Any) -> None:
        s = self.settings
        self._reaper = Reaper(self.services.ledger, self.services.submitter, interval_s=s.reaper_interval_s,
                              retention_s=s.retention_s)
        self._reaper_thread = self._reaper.start()
        log.info("reaper started: every %.1fs, lease %.1fs", s.reaper_interval_s, s.lease_s)

    @staticmethod
    def check_for_shutdown_often(sender: Any = None, **_: Any) -> None:
        """Celery's event loop sleeps in epoll until its next timer is due, up to 10 s when idle, and a SIGTERM only
        sets a flag the loop reads once it wakes (the interrupted epoll is resumed): a stopped idle worker lingered
        3-5 s before it began to shut down. A no-op timer every SHUTDOWN_CHECK_S bounds that wait."""
        sender.timer.call_repeatedly(SHUTDOWN_CHECK_S, lambda: None)

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
    worker_ready.connect(process.check_for_shutdown_often, weak=False)
    worker_shutting_down.connect(process.start_drain, weak=False)
    worker_shutdown.connect(process.stop_reaper, weak=False)
    return app, process


def run_worker(settings: Settings, *, concurrency: int, loglevel: str = "INFO", name: str | None = None,
               quiet: bool = False, ready_file: Path | None = None, health_port: int | None = None,
               health_host: str = "0.0.0.0") -> None:
    """Start a Celery prefork worker with the reaper beside it; blocks until the worker exits.

    `quiet` drops what Celery prints at startup for whoever operates a long-lived worker — its banner, and the
    SecurityWarning it gives as root (a `warnings.warn` that C_FORCE_ROOT does not silence: that variable only lets
    a root worker accept pickle, which this one never does) — so `taskservice dev` can keep the screen for its
    own addresses. `ready_file` is created once the worker consumes, for a parent that waits for it. With
    health_port, the worker also answers /readyz and /healthz there from its own state (workers/health.py)."""
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())  # handlers in the working directory are importable, as in `taskservice dev`
    app, process = create_worker_app(settings)
    if health_port is not None:
        from workers.health import WorkerHealth, install

        install(app, WorkerHealth(engine=lambda: process.services.engine, reaper_alive=process.reaper_alive),
                host=health_host, port=health_port)
    if ready_file is not None:
        worker_ready.connect(lambda **_: ready_file.touch(), weak=False)
    if quiet:
        warnings.filterwarnings("ignore", category=SecurityWarning)
    argv = ["--quiet"] if quiet else []  # a global option of the `celery` command, so before `worker`
    argv += ["worker", f"--loglevel={loglevel}", f"--concurrency={concurrency}", "--pool=prefork",
             "--without-gossip", "--without-mingle", "--without-heartbeat", f"--queues={settings.queue}"]
    # Unique node names let several workers share one host (and one broker vhost) without clashing.
    argv.append(f"--hostname={name or f'taskservice-{os.getpid()}@%h'}")
    app.worker_main(argv=argv)
