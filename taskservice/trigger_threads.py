"""One consumer thread per enabled trigger of one kind, following the trigger table (created, changed, disabled,
deleted) every few seconds: the process shape shared by Kafka ingest and queue triggers."""
from __future__ import annotations

import logging
import threading
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from taskservice.db import is_outage

if TYPE_CHECKING:
    from taskservice.ledger.triggers import Trigger
    from taskservice.services import Services

log = logging.getLogger(__name__)


class TriggerLoop(Protocol):
    """One trigger's consumer: `run` returns once `stop` is set, at a batch boundary."""

    trigger: Trigger
    stop: threading.Event

    def run(self) -> None: ...


L = TypeVar("L", bound=TriggerLoop)


class TriggerThreads(ABC, Generic[L]):
    """Starts a loop per enabled trigger of `kind`, restarts it when the trigger changes or its thread died, stops it
    when the trigger goes. A ledger that is away leaves the running loops alone until it is back."""

    kind = ""
    started = "trigger threads started"

    def __init__(self, services: Services, *, only: Sequence[str] = (), refresh_s: float = 5.0) -> None:
        self.services = services
        self.only = set(only)
        self.refresh_s = refresh_s
        self.stop = threading.Event()
        self._running: dict[str, tuple[L, threading.Thread]] = {}

    @abstractmethod
    def loop_for(self, trigger: Trigger) -> L:
        """A new, not yet started loop for `trigger`."""

    @abstractmethod
    def describe(self, loop: L) -> str:
        """What the loop consumes, for the log line that says it started."""

    def run_forever(self) -> None:
        log.info("%s", self.started)
        try:
            while not self.stop.is_set():
                try:
                    self.refresh()
                except Exception as exc:  # keep the running loops; look again later
                    if is_outage(exc):
                        log.warning("%s triggers: ledger unreachable (%s); looking again in %.0fs", self.kind,
                                    type(exc).__name__, self.refresh_s)
                    else:
                        log.exception("could not read the %s triggers", self.kind)
                self.stop.wait(self.refresh_s)
        finally:
            for name in list(self._running):
                self._stop_one(name)

    def refresh(self) -> None:
        wanted = {t.name: t for t in self.services.triggers.list(enabled_only=True, kind=self.kind)
                  if not self.only or t.name in self.only}
        for name, (loop, thread) in list(self._running.items()):
            changed = name in wanted and wanted[name].updated_at != loop.trigger.updated_at
            if name not in wanted or changed or not thread.is_alive():
                self._stop_one(name)
        for name, trigger in wanted.items():
            if name not in self._running:
                loop = self.loop_for(trigger)
                thread = threading.Thread(target=loop.run, name=f"{self.kind}-{name}", daemon=True)
                thread.start()
                self._running[name] = (loop, thread)
                log.info("%s trigger %s: %s", self.kind, name, self.describe(loop))

    def _stop_one(self, name: str) -> None:
        loop, thread = self._running.pop(name)
        loop.stop.set()
        thread.join(timeout=30)
        log.info("%s trigger %s: stopped", self.kind, name)
