"""Task control: stop and retry, one invocation or every invocation a filter selects.

The API, the CLI (through the API) and the console all act through `TaskControl`, so a stop cascades to fan-out
children and a retry rings its doorbell the same way wherever it was asked for.
"""
from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from taskservice.errors import Conflict, IllegalTransition
from taskservice.ledger import TERMINAL, Ledger, Status
from taskservice.ledger.queries import InvocationFilter
from taskservice.ledger.records import Invocation
from taskservice.submission import Submitter

BULK_LIMIT = 10_000
RETRYABLE = frozenset({Status.FAILED, Status.STOPPED, Status.EXPIRED, Status.INVALID})


@dataclass
class BulkResult:
    """What a bulk stop or retry did: the invocations it moved and, per invocation it could not, the reason."""

    changed: list[Invocation] = field(default_factory=list)
    refused: list[tuple[Invocation, str]] = field(default_factory=list)


class TaskControl:
    def __init__(self, ledger: Ledger, submitter: Submitter) -> None:
        self.ledger = ledger
        self.submitter = submitter

    def stop(self, invocation: Invocation) -> Invocation:
        """Durable stop of one invocation and of every fan-out child still running or waiting under it."""
        stopped = self.ledger.request_stop(invocation.pk)
        self._stop_children(invocation.pk)
        return stopped

    def _stop_children(self, pk: int) -> None:
        for child in self.ledger.children(pk):
            if child.status not in TERMINAL and child.status is not Status.STOPPING:
                with contextlib.suppress(Conflict, IllegalTransition):  # it ended between the read and the stop
                    self.ledger.request_stop(child.pk)
            self._stop_children(child.pk)

    def retry(self, invocation: Invocation, *, include_succeeded: bool = False) -> Invocation:
        """Re-run an ended invocation as a new attempt under the same id, and ring its doorbell."""
        retried = self.ledger.retry(invocation.pk, include_succeeded=include_succeeded)
        self.submitter.ring(retried.pk)
        return retried

    def stop_matching(self, flt: InvocationFilter, *, limit: int = BULK_LIMIT) -> BulkResult:
        """Stop every invocation the filter selects that has not ended (at most `limit`)."""
        live = tuple(s for s in (flt.statuses or tuple(Status)) if s not in TERMINAL and s is not Status.STOPPING)
        return self._each(replace(flt, statuses=live), limit, self.stop) if live else BulkResult()

    def retry_matching(self, flt: InvocationFilter, *, include_succeeded: bool = False,
                       limit: int = BULK_LIMIT) -> BulkResult:
        """Retry every ended invocation the filter selects (Succeeded ones only when asked), at most `limit`."""
        allowed = RETRYABLE | ({Status.SUCCEEDED} if include_succeeded else set())
        ended = tuple(s for s in (flt.statuses or tuple(Status)) if s in allowed)
        if not ended:
            return BulkResult()
        return self._each(replace(flt, statuses=ended), limit,
                          lambda inv: self.retry(inv, include_succeeded=include_succeeded))

    def _each(self, flt: InvocationFilter, limit: int, action: Callable[[Invocation], Invocation]) -> BulkResult:
        result = BulkResult()
        cursor: str | None = None
        seen = 0
        while seen < limit:
            page = self.ledger.list_invocations(flt, limit=min(500, limit - seen), cursor=cursor)
            for invocation in page.items:
                try:
                    result.changed.append(action(invocation))
                except (Conflict, IllegalTransition) as exc:  # it moved on since the page was read
                    result.refused.append((invocation, exc.message))
            seen += len(page.items)
            if page.next_cursor is None:
                break
            cursor = page.next_cursor
        return result
