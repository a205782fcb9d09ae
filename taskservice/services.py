"""The object graph of one process, built from Settings: engine → ledger → dispatcher → submitter.

Passed explicitly to whatever needs it (Flask app, worker, CLI); never a module-level singleton.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from sqlalchemy import Engine

from taskservice.config import Settings
from taskservice.control import TaskControl
from taskservice.db import make_engine
from taskservice.dispatch import Dispatcher, make_celery
from taskservice.ledger import Ledger
from taskservice.ledger.dead_letters import DeadLetterStore
from taskservice.ledger.flows import FlowStore
from taskservice.ledger.outbox import Outbox
from taskservice.ledger.tokens import TokenStore
from taskservice.ledger.triggers import TriggerStore
from taskservice.replay import Replayer
from taskservice.submission import Submitter

if TYPE_CHECKING:
    from taskservice.relay import Relay


@dataclass
class Services:
    settings: Settings
    engine: Engine
    ledger: Ledger
    dispatcher: Dispatcher
    submitter: Submitter
    outbox: Outbox
    triggers: TriggerStore
    dead_letters: DeadLetterStore
    replayer: Replayer
    control: TaskControl
    tokens: TokenStore
    flows: FlowStore

    @classmethod
    def build(cls, settings: Settings, *, dispatcher: Dispatcher | None = None) -> Services:
        engine = make_engine(settings.resolved_database_url)
        ledger = Ledger(engine, max_log_lines=settings.max_log_lines)
        dispatcher = dispatcher or Dispatcher(make_celery(settings))
        submitter = Submitter(ledger, dispatcher, max_payload_bytes=settings.max_payload_bytes)
        dead_letters = DeadLetterStore(engine)
        return cls(settings=settings, engine=engine, ledger=ledger, dispatcher=dispatcher, submitter=submitter,
                   outbox=Outbox(engine), triggers=TriggerStore(engine), dead_letters=dead_letters,
                   replayer=Replayer(ledger, dead_letters, submitter), control=TaskControl(ledger, submitter),
                   tokens=TokenStore(engine), flows=FlowStore(engine))

    def close(self) -> None:
        self.ledger.close()
        self.engine.dispose()


def build_relay(services: Services, relay_id: str) -> Relay:
    """A relay over these services' outbox, configured from their settings."""
    from taskservice.destinations.registry import Destinations
    from taskservice.relay import Relay

    s = services.settings
    return Relay(services.outbox, Destinations(s, services.submitter), relay_id=relay_id, batch=s.relay_batch,
                 lease_s=s.relay_lease_s, idle_s=s.relay_idle_s, backoff_base_s=s.relay_backoff_base_s,
                 backoff_max_s=s.relay_backoff_max_s, max_attempts=s.relay_max_attempts)
