"""The reaper: runs beside every worker, so leases are watched wherever work runs. Several reapers are safe.

Besides lapsed leases, over-age invocations and retention, it finds doorbells that are gone (design §6): a waiting
invocation whose message is neither in the broker's queue nor being claimed is rung again within a few seconds —
and a backlog that is merely queued, however long, is left alone (see Ledger.silent_doorbells).
"""
from __future__ import annotations

import logging
import threading
from datetime import datetime

from taskservice.clock import utcnow
from taskservice.db import is_outage
from taskservice.ledger import Ledger
from taskservice.submission import Submitter

log = logging.getLogger(__name__)

# A doorbell rung this recently may be between the broker and its claim; older ones must show up twice in a row as
# silent (one reaper interval apart) before they are rung again, so a claim in flight is never mistaken for a loss.
SILENT_GRACE_S = 2.0


class Reaper:
    def __init__(self, ledger: Ledger, submitter: Submitter, *, interval_s: float, retention_s: float) -> None:
        self.ledger = ledger
        self.submitter = submitter
        self.interval_s = interval_s
        self.retention_s = retention_s
        self._suspects: set[tuple[int, datetime]] = set()
        self._stop = threading.Event()
        self.rerung = 0  # doorbells rung again because they were silent (a figure for benchmarks and logs)

    def run_once(self) -> None:
        report = self.ledger.reap(retention_s=self.retention_s)
        failed = sum(not self.submitter.ring(pk) for pk in report.redispatch)
        silent = self._rering_silent()
        if report.lease_lapsed or report.expired or report.redispatch or report.purged or silent:
            log.info("reaper: %d lease(s) lapsed, %d expired, %d re-dispatched (%d failed), %d silent doorbell(s) "
                     "rung again, %d purged", report.lease_lapsed, report.expired, len(report.redispatch), failed,
                     silent, report.purged)

    def _rering_silent(self) -> int:
        rung_before = utcnow()
        queued = self.submitter.dispatcher.queued()
        if queued is None:  # the broker cannot say how many doorbells it holds: ringing would fail anyway
            self._suspects = set()
            return 0
        queue = self.submitter.dispatcher.queue
        found = set(self.ledger.silent_doorbells(queue, queued, rung_before=rung_before, grace_s=SILENT_GRACE_S))
        confirmed, self._suspects = found & self._suspects, found - self._suspects
        if not confirmed:
            return 0
        taken = self.ledger.take_for_reringing(sorted(confirmed))
        for pk in taken:
            self.submitter.ring(pk)
        self.rerung += len(taken)
        return len(taken)

    def run_forever(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self.run_once()
            except Exception as exc:  # the reaper must outlive a database blip
                if is_outage(exc):
                    log.warning("reaper: ledger unreachable (%s); trying again in %.1fs", type(exc).__name__,
                                self.interval_s)
                else:
                    log.exception("reaper pass failed; trying again in %.1fs", self.interval_s)

    def start(self) -> threading.Thread:
        thread = threading.Thread(target=self.run_forever, name="taskservice-reaper", daemon=True)
        thread.start()
        return thread

    def stop(self) -> None:
        self._stop.set()
