"""The reaper: runs beside every worker, so leases are watched wherever work runs. Several reapers are safe."""
from __future__ import annotations

import logging
import threading

from taskservice.dispatch import Dispatcher
from taskservice.errors import DispatchError
from taskservice.ledger import Ledger

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, ledger: Ledger, dispatcher: Dispatcher, *, interval_s: float, retention_s: float,
                 redispatch_after_s: float) -> None:
        self.ledger = ledger
        self.dispatcher = dispatcher
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.redispatch_after_s = redispatch_after_s
        self._stop = threading.Event()

    def run_once(self) -> None:
        report = self.ledger.reap(retention_s=self.retention_s, redispatch_after_s=self.redispatch_after_s)
        failed = []
        for pk in report.redispatch:
            try:
                self.dispatcher.ring(pk)
            except DispatchError:
                failed.append(pk)
        if failed:
            self.ledger.mark_undispatched(failed)
        if report.lease_lapsed or report.expired or report.redispatch or report.purged:
            log.info("reaper: %d lease(s) lapsed, %d expired, %d re-dispatched (%d failed), %d purged",
                     report.lease_lapsed, report.expired, len(report.redispatch), len(failed), report.purged)

    def run_forever(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception:  # the reaper must outlive a database blip
                log.exception("reaper pass failed; trying again in %.1fs", self.interval_s)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="taskservice-reaper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
