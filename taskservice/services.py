"""The object graph of one process, built from Settings: engine → ledger → dispatcher → submitter.

Passed explicitly to whatever needs it (Flask app, worker, CLI); never a module-level singleton.
"""
from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import Engine

from taskservice.config import Settings
from taskservice.db import make_engine
from taskservice.dispatch import Dispatcher, make_celery
from taskservice.ledger import Ledger
from taskservice.submission import Submitter


@dataclass
class Services:
    settings: Settings
    engine: Engine
    ledger: Ledger
    dispatcher: Dispatcher
    submitter: Submitter

    @classmethod
    def build(cls, settings: Settings, *, dispatcher: Dispatcher | None = None) -> Services:
        if settings.resolved_database_url.startswith("sqlite"):
            settings.data_dir.mkdir(parents=True, exist_ok=True)
        engine = make_engine(settings.resolved_database_url)
        ledger = Ledger(engine, max_log_lines=settings.max_log_lines)
        dispatcher = dispatcher or Dispatcher(make_celery(settings))
        submitter = Submitter(ledger, dispatcher, max_payload_bytes=settings.max_payload_bytes)
        return cls(settings=settings, engine=engine, ledger=ledger, dispatcher=dispatcher, submitter=submitter)

    def close(self) -> None:
        self.engine.dispose()
