"""The test rig: one uniquely named Postgres database and RabbitMQ queues per run, the service processes on top of
them, and their teardown.

Unique names let the bench run next to the test suite or another bench run on the same servers without either seeing
the other's invocations; everything is dropped at the end, whatever happened.
"""
from __future__ import annotations

import os
import secrets
import socket
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import psycopg
import redis
import requests

from bench.bare_celery_app import read_completion, reset_completion
from bench.broker import BrokerAdmin
from bench.ledger_probe import LedgerProbe
from bench.procs import BenchError, Launched, ProcessSet, run_checked, wait_for_http
from taskservice.config import Settings
from taskservice.services import Services

REPO = Path(__file__).resolve().parent.parent
FUNCTION = "noop"
NOOP_HANDLER = "workers.handlers.noop:handler"


@dataclass(frozen=True)
class Endpoints:
    postgres: str  # libpq URL of the server, without a database: postgresql://postgres@127.0.0.1:5432
    amqp: str
    redis: str


@dataclass(frozen=True)
class RunNames:
    run_id: str
    database: str
    ts_queue: str
    bare_queue: str
    publish_queue: str
    redis_key: str

    @classmethod
    def fresh(cls, kind: str = "core") -> RunNames:
        """Names for a new run; `kind` names the bench in the database name (bench_core_…, bench_relay_…)."""
        run_id = f"{time.strftime('%Y%m%d_%H%M%S')}_{secrets.token_hex(3)}"
        return cls(run_id=run_id, database=f"bench_{kind}_{run_id}", ts_queue=f"bench.{run_id}.taskservice",
                   bare_queue=f"bench.{run_id}.bare", publish_queue=f"bench.{run_id}.publish",
                   redis_key=f"bench:{run_id}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def venv_tool(name: str) -> str:
    tool = Path(sys.executable).parent / name
    if not tool.exists():
        raise BenchError(f"{tool} not found: run the bench with the project's virtualenv python (.venv/bin/python)")
    return str(tool)


class Rig:
    def __init__(self, endpoints: Endpoints, names: RunNames, results_dir: Path) -> None:
        self.endpoints = endpoints
        self.names = names
        self.results_dir = results_dir
        self.db_created = False
        base_env = {k: v for k, v in os.environ.items() if not k.startswith(("TASKSERVICE_", "BENCH_"))}
        self.service_env = {
            "TASKSERVICE_DATABASE_URL": self.sqlalchemy_url,
            "TASKSERVICE_BROKER_URL": endpoints.amqp,
            "TASKSERVICE_QUEUE": self.names.ts_queue,
            # Open API, as `taskservice dev` runs it: the figures leave out the token check (one indexed lookup).
            "TASKSERVICE_AUTH": "false",
            "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH", "")])),
            "PYTHONUNBUFFERED": "1",
        }
        self.procs = ProcessSet(results_dir, {**base_env, **self.service_env}, REPO)
        self.probe = LedgerProbe(self.conninfo)
        self.broker = BrokerAdmin(endpoints.amqp)
        self.redis = redis.Redis.from_url(endpoints.redis)
        self.api_url = ""
        self._services: Services | None = None

    # --- names ----------------------------------------------------------------------------------------------------
    @property
    def conninfo(self) -> str:
        return f"{self.endpoints.postgres.rstrip('/')}/{self.names.database}"

    @property
    def sqlalchemy_url(self) -> str:
        return "postgresql+psycopg://" + self.conninfo.split("://", 1)[1]

    def in_process_settings(self) -> Settings:
        return Settings(database_url=self.sqlalchemy_url, broker_url=self.endpoints.amqp, queue=self.names.ts_queue)

    # --- lifecycle ------------------------------------------------------------------------------------------------
    def setup(self) -> None:
        """Create and migrate the run's database and check that RabbitMQ and Redis answer."""
        with psycopg.connect(f"{self.endpoints.postgres.rstrip('/')}/postgres", autocommit=True) as admin:
            admin.execute(f'CREATE DATABASE "{self.names.database}"')
        self.db_created = True
        run_checked([venv_tool("taskservice"), "migrate"], env=self.procs.env, cwd=REPO)
        self.broker.server_version()
        self.redis.ping()

    def teardown(self) -> None:
        """Stop every process, then drop the database, queues and Redis keys; each step runs even if one fails."""
        steps = [self.procs.stop_all, self._close_services, self.probe.close,
                 lambda: self.broker.delete([self.names.ts_queue, self.names.bare_queue, self.names.publish_queue]),
                 lambda: reset_completion(self.redis, self.names.redis_key), self._drop_database]
        for step in steps:
            try:
                step()
            except Exception as exc:
                print(f"warning: teardown step failed: {exc}")

    def _close_services(self) -> None:
        if self._services is not None:
            self._services.close()
            self._services = None

    def _drop_database(self) -> None:
        if self.db_created:
            with psycopg.connect(f"{self.endpoints.postgres.rstrip('/')}/postgres", autocommit=True) as admin:
                admin.execute(f'DROP DATABASE IF EXISTS "{self.names.database}" WITH (FORCE)')

    # --- service processes ----------------------------------------------------------------------------------------
    def start_api(self, workers: int) -> Launched:
        port = free_port()
        api = self.procs.start("api", [venv_tool("taskservice"), "api", "--port", str(port), "--workers", str(workers)],
                               watched=True)
        self.api_url = f"http://127.0.0.1:{port}"
        wait_for_http(f"{self.api_url}/healthz", api, self.procs)
        return api

    def register_noop(self) -> None:
        response = requests.put(f"{self.api_url}/v1/functions/{FUNCTION}", json={"handler": NOOP_HANDLER}, timeout=10)
        if response.status_code not in (200, 201):
            raise BenchError(f"PUT /v1/functions/{FUNCTION} answered {response.status_code}: {response.text}")

    def start_ts_worker(self, concurrency: int, *, label: str = "ts-worker", options: tuple[str, ...] = ()) -> Launched:
        """Start `taskservice worker` (with extra `options`) and return once every pool process has run an
        invocation (its lazily built connections are then open), with the ledger and queue emptied again."""
        worker = self.procs.start(label, [venv_tool("taskservice"), "worker", "-c", str(concurrency),
                                          "--loglevel", "WARNING", "--name", f"{label}-{self.names.run_id}@%h",
                                          *options], watched=True)
        services = self.in_process_services()
        warmups = 10 * concurrency
        for _ in range(warmups):
            services.submitter.submit(FUNCTION, {})
        done = self.probe.wait_until("status = 'Succeeded'", warmups, timeout_s=60, check=self.procs.check)
        if done < warmups:
            raise BenchError(f"taskservice worker finished only {done}/{warmups} warm-up invocations in 60 s:\n"
                             f"{worker.log_tail()}")
        self.reset_ts()
        return worker

    def start_bare_worker(self, concurrency: int) -> Launched:
        """Start a plain `celery worker` on the bare queue and warm it up the same way."""
        from bench.bare_celery_app import NOOP_TASK, make_app

        env = {"BENCH_BROKER_URL": self.endpoints.amqp, "BENCH_BARE_QUEUE": self.names.bare_queue,
               "BENCH_REDIS_URL": self.endpoints.redis, "BENCH_REDIS_KEY": self.names.redis_key}
        worker = self.procs.start("bare-worker", [
            venv_tool("celery"), "-A", "bench.bare_celery_app", "worker", "-c", str(concurrency), "--pool", "prefork",
            "-Q", self.names.bare_queue, "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
            "--without-heartbeat", "-n", f"bare-{self.names.run_id}@%h"], extra_env=env, watched=True)
        app = make_app(self.endpoints.amqp, self.names.bare_queue)
        reset_completion(self.redis, self.names.redis_key)
        warmups = 10 * concurrency
        for _ in range(warmups):
            app.tasks[NOOP_TASK].delay()
        deadline = time.monotonic() + 60
        while read_completion(self.redis, self.names.redis_key)[0] < warmups and time.monotonic() < deadline:
            self.procs.check()
            time.sleep(0.05)
        if read_completion(self.redis, self.names.redis_key)[0] < warmups:
            raise BenchError(f"bare Celery worker did not finish its warm-up in 60 s:\n{worker.log_tail()}")
        reset_completion(self.redis, self.names.redis_key)
        return worker

    def in_process_services(self) -> Services:
        """taskservice's own object graph in the bench process, for in-process submission (built once)."""
        if self._services is None:
            self._services = Services.build(self.in_process_settings())
        return self._services

    def reset_ts(self) -> None:
        """Empty the ledger and purge the taskservice queue between phases."""
        self.probe.reset()
        self.broker.purge(self.names.ts_queue)
