"""What every destination kind implements, and the error it raises when a record could not be delivered."""
from __future__ import annotations

from typing import Any, Protocol

from taskservice.errors import TaskServiceError


class DeliveryError(TaskServiceError):
    """A record could not be delivered this time; the relay keeps it and tries again later with backoff.

    The message is stored in the ledger and shown to operators, so it must never contain a response body or a
    secret."""

    code = "DeliveryError"

    def __init__(self, message: str, *, permanent: bool = False) -> None:
        super().__init__(message)
        self.permanent = permanent  # retrying cannot help (e.g. the record is too large for the target)


class Submits(Protocol):
    """What a function: destination needs of the submission path, so destinations sit below it instead of
    importing it (the relay hands in the one Submitter)."""

    def submit(self, function: str, payload: Any, *, invocation_id: str | None = None) -> object:
        """Record and ring one invocation; DuplicateInvocation when the id is taken."""
        ...


class Destination(Protocol):
    """One destination URI. `deliver` must be idempotent from the consumer's point of view: the relay delivers at
    least once, and records carry requestContext.requestId for de-duplication."""

    uri: str

    def deliver(self, records: list[dict[str, Any]]) -> list[DeliveryError | None]:
        """Deliver a batch; one entry per record, None when that record was delivered."""
        ...

    def close(self) -> None:
        ...
