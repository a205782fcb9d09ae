"""The reaper: runs beside every worker, so leases are watched wherever work runs. Several reapers are safe."""
from __future__ import annotations

import logging
import threading

from taskservice.ledger import Ledger
from taskservice.submission import Submitter

log = logging.getLogger(__name__)


class Reaper:
    def __init__(self, ledger: Ledger, submitter: Submitter, *, interval_s: float, retention_s: float,
                 redispatch_after_s: float) -> None:
        self.ledger = ledger
        self.submitter = submitter
        self.interval_s = interval_s
        self.retention_s = retention_s
        self.redispatch_after_s = redispatch_after_s
        self._stop = threading.Event()

    def run_once(self) -> None:
        report = self.ledger.reap(retention_s=self.retention_s, redispatch_after_s=self.redispatch_after_s)
        failed = sum(not self.submitter.ring(pk) for pk in report.redispatch)
        if report.lease_lapsed or report.expired or report.redispatch or report.purged:
            log.info("reaper: %d lease(s) lapsed, %d expired, %d re-dispatched (%d failed), %d purged",
                     report.lease_lapsed, report.expired, len(report.redispatch), failed, report.purged)

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
