"""A run of its own on the machine's Postgres and RabbitMQ for the small benches (events, flows): a new database and
queue, migrated services over them and the environment for `taskservice` child processes; all dropped at the end."""
from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from kombu import Connection
from sqlalchemy import text

from taskservice import migrate
from taskservice.config import Settings
from taskservice.db import make_engine
from taskservice.services import Services

REPO = Path(__file__).resolve().parent.parent
PG = "postgresql+psycopg://postgres@127.0.0.1:5432"
AMQP = "amqp://guest:guest@127.0.0.1:5672//"


@dataclass(frozen=True)
class FreshRun:
    services: Services
    env: dict[str, str]  # for child processes: this run's TASKSERVICE_* and nothing inherited
    logs: Path


@contextmanager
def fresh_run(kind: str) -> Iterator[FreshRun]:
    run = uuid.uuid4().hex[:8]
    db = f"bench_{kind}_{run}"
    logs = REPO / "bench" / "results" / f"{kind}-{run}"
    logs.mkdir(parents=True, exist_ok=True)
    admin = make_engine(f"{PG}/postgres").execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{db}"'))
    settings = Settings(database_url=f"{PG}/{db}", broker_url=AMQP, queue=f"bench.{db}", data_dir=logs)
    services = Services.build(settings)
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("TASKSERVICE_")}, **settings.to_env(),
           "PYTHONPATH": str(REPO)}
    try:
        migrate.upgrade(services.engine)
        yield FreshRun(services=services, env=env, logs=logs)
    finally:
        services.close()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{db}" WITH (FORCE)'))
        admin.dispose()
        with Connection(AMQP) as amqp:
            amqp.default_channel.queue_delete(f"bench.{db}")
