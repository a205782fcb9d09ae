"""function:<name> — submit the record as the payload of another function, through the one submission path.

The invocation id is derived from the record's requestId and invoke count, so a redelivered record finds its
invocation already there (409) and is treated as delivered: never invoked twice.
"""
from __future__ import annotations

from typing import Any

from taskservice.destinations.base import DeliveryError, Submits
from taskservice.errors import DuplicateInvocation, FunctionNotFound, PayloadTooLarge, TaskServiceError


def chained_invocation_id(record: dict[str, Any]) -> str:
    context = record["requestContext"]
    return f"r{context['approximateInvokeCount']}_{context['requestId']}"


class FunctionDestination:
    def __init__(self, uri: str, function: str, submitter: Submits) -> None:
        self.uri = uri
        self.function = function
        self.submitter = submitter

    def deliver(self, records: list[dict[str, Any]]) -> list[DeliveryError | None]:
        return [self._one(record) for record in records]

    def _one(self, record: dict[str, Any]) -> DeliveryError | None:
        try:
            self.submitter.submit(self.function, record, invocation_id=chained_invocation_id(record))
        except DuplicateInvocation:
            return None  # an earlier delivery of this record already submitted it
        except FunctionNotFound:
            return DeliveryError(f"function {self.function!r} does not exist (yet); will try again")
        except PayloadTooLarge as exc:
            return DeliveryError(f"record too large for function {self.function!r}: {exc.message}", permanent=True)
        except TaskServiceError as exc:
            return DeliveryError(f"could not submit to function {self.function!r}: {exc.message}")
        return None

    def close(self) -> None:
        return None
