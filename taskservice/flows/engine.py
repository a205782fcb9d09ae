"""The flow engine process (`taskservice engine`; `taskservice dev` starts one): takes the executions whose wake-ups
have come due and advances each in one transaction.

Nothing here holds a worker slot or waits on a step: a step's end is a row in `flow_wakeups`, written by the step
invocation's terminal transition. Several engines may run; each execution is locked by one at a time (SKIP LOCKED),
and everything an advance decides — step runs, new step invocations, history, timers — commits together, so an engine
SIGKILLed at any point leaves the wake-ups in place for the next one and has submitted nothing twice. The doorbells of
new step invocations are rung after the commit; one lost in between is rung by the reaper like any other.
"""
from __future__ import annotations

import json
import logging
import threading
import time
from typing import Any

from taskservice.clock import utcnow
from taskservice.db import is_outage
from taskservice.flowdef import FlowDefinition, parse_definition
from taskservice.flows.interpreter import Advance
from taskservice.ledger.flow_state import due_executions, lock_due, save
from taskservice.ledger.flows import add_events, wake
from taskservice.services import Services

log = logging.getLogger(__name__)
#: How often a busy engine looks for due wake-ups: the floor of step-to-step latency while executions run.
POLL_S = 0.02
#: An engine that has found nothing for IDLE_AFTER_S looks only this often (an idle poll every 20 ms costs about a
#: tenth of a core): the first step after a quiet spell may wait this long, the steps after it do not.
IDLE_POLL_S = 0.2
IDLE_AFTER_S = 2.0
#: Executions taken per pass.
BATCH = 50


class FlowEngine:
    def __init__(self, services: Services, *, poll_s: float = POLL_S, batch: int = BATCH) -> None:
        self.services = services
        self.poll_s = poll_s
        self.batch = batch
        self.stop = threading.Event()
        self.advanced = 0
        self._definitions: dict[str, FlowDefinition] = {}

    def run_forever(self) -> None:
        log.info("flow engine started")
        outage_s = 0.0
        last_work = time.monotonic()
        while not self.stop.is_set():
            try:
                worked = self.run_once()
                outage_s = 0.0
            except Exception as exc:
                if not is_outage(exc):
                    log.exception("flow engine pass failed; trying again")
                else:
                    log.warning("ledger unreachable (%s); the engine waits and tries again", type(exc).__name__)
                outage_s = min(5.0, max(0.2, outage_s * 2))
                self.stop.wait(outage_s)
                continue
            now = time.monotonic()
            if worked:
                last_work = now
            else:
                self.stop.wait(self.poll_s if now - last_work < IDLE_AFTER_S else max(self.poll_s, IDLE_POLL_S))
        log.info("flow engine stopped")

    def run_once(self) -> int:
        """Advance every execution with a due wake-up (up to `batch`); returns how many were advanced."""
        done = 0
        for pk in due_executions(self.services.engine, utcnow(), limit=self.batch):
            if self.stop.is_set():
                break
            done += self.advance(pk)
        return done

    def advance(self, pk: int) -> bool:
        services = self.services
        now = utcnow()
        with services.engine.begin() as conn:
            loaded = lock_due(conn, pk, now)
            if loaded is None:
                return False
            advance = Advance(ex=loaded, definition=self._definition(loaded.definition), conn=conn,
                              ledger=services.ledger, queue=services.dispatcher.queue,
                              max_payload_bytes=services.settings.max_payload_bytes, now=now)
            advance.run()
            save(conn, loaded, now)
            add_events(conn, pk, advance.events)
            for due in sorted(set(advance.timers)):
                wake(conn, pk, at=due)
        for invocation_pk in advance.submitted:
            services.submitter.ring(invocation_pk)
        self.advanced += 1
        return True

    def _definition(self, definition: dict[str, Any]) -> FlowDefinition:
        """Parsed once per distinct definition: executions keep their own copy, so the key is its text."""
        key = json.dumps(definition, sort_keys=True)
        parsed = self._definitions.get(key)
        if parsed is None:
            if len(self._definitions) > 256:
                self._definitions.clear()
            parsed = self._definitions[key] = parse_definition(definition)
        return parsed
