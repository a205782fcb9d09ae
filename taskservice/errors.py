"""One root error with a subtree per boundary; the API maps them to HTTP in a single handler."""
from __future__ import annotations

from typing import Any


class TaskServiceError(Exception):
    """Root of every error the service raises on purpose."""

    code = "InternalError"
    http_status = 500

    def __init__(self, message: str, *, details: Any = None) -> None:
        super().__init__(message)
        self.message = message
        self.details = details


class ConfigError(TaskServiceError):
    code = "ConfigError"


# --- caller errors (4xx) -------------------------------------------------------------------------------------------
class RequestError(TaskServiceError):
    code = "BadRequest"
    http_status = 400


class MalformedJSON(RequestError):
    code = "MalformedJSON"


class InvalidName(RequestError):
    code = "InvalidName"


class InvalidInvocationId(RequestError):
    code = "InvalidInvocationId"


class InvalidQuery(RequestError):
    code = "InvalidQuery"


class InvalidFunctionConfig(RequestError):
    code = "InvalidFunctionConfig"
    http_status = 422


class InvalidTriggerConfig(RequestError):
    code = "InvalidTriggerConfig"
    http_status = 422


class InvalidReplayRequest(RequestError):
    code = "InvalidReplayRequest"
    http_status = 422


class InvalidFlowDefinition(RequestError):
    """A flow definition that cannot run; the message starts with the step path and field at fault."""

    code = "InvalidFlowDefinition"
    http_status = 422

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}" if path else message, details={"path": path})
        self.path = path


class InvalidDelay(RequestError):
    code = "InvalidDelay"


class InvalidStorageEvent(RequestError):
    code = "InvalidStorageEvent"
    http_status = 422


class UnsupportedMediaType(RequestError):
    code = "UnsupportedMediaType"
    http_status = 415


class PayloadTooLarge(RequestError):
    code = "PayloadTooLarge"
    http_status = 413


class NotFound(RequestError):
    code = "NotFound"
    http_status = 404


class FunctionNotFound(NotFound):
    code = "FunctionNotFound"


class InvocationNotFound(NotFound):
    code = "InvocationNotFound"


class TriggerNotFound(NotFound):
    code = "TriggerNotFound"


class DeadLetterNotFound(NotFound):
    code = "DeadLetterNotFound"


class FlowNotFound(NotFound):
    code = "FlowNotFound"


class ExecutionNotFound(NotFound):
    code = "ExecutionNotFound"


class Conflict(RequestError):
    code = "Conflict"
    http_status = 409


class DuplicateInvocation(Conflict):
    """Raised with the invocation that already holds the id, so callers can read its state."""

    code = "InvocationAlreadyExist"

    def __init__(self, message: str, *, existing: dict[str, Any]) -> None:
        super().__init__(message, details=existing)
        self.existing = existing


class DuplicateExecution(Conflict):
    """An execution name already taken in this flow; carries the existing execution's primary key."""

    code = "ExecutionAlreadyExist"

    def __init__(self, message: str, *, existing: dict[str, Any]) -> None:
        super().__init__(message, details=existing)
        self.existing = existing


class ExecutionStateConflict(Conflict):
    """Stop of an execution that has ended, or redrive of one that has not failed, stopped or timed out."""

    code = "ExecutionStateConflict"


# --- ledger -------------------------------------------------------------------------------------------------------
class NotRetryable(Conflict):
    """Retry of an invocation that has not ended, or of a Succeeded one without asking for it explicitly."""

    code = "NotRetryable"


class Forbidden(RequestError):
    code = "Forbidden"
    http_status = 403


class Unauthorized(RequestError):
    code = "Unauthorized"
    http_status = 401


class LedgerError(TaskServiceError):
    code = "LedgerError"


class IllegalTransition(LedgerError):
    """A status change the state machine does not allow; a programming error or a lost race."""

    code = "IllegalTransition"
    http_status = 409


# --- dependencies away --------------------------------------------------------------------------------------------
class Unavailable(TaskServiceError):
    """A dependency is unreachable for now; nothing was changed and the same request may simply be sent again
    (503 with Retry-After)."""

    code = "ServiceUnavailable"
    http_status = 503
    retry_after_s = 2


class LedgerUnavailable(Unavailable):
    code = "LedgerUnavailable"


class DispatchError(Unavailable):
    code = "DispatchError"


# --- client (CLI talking to the API) ------------------------------------------------------------------------------
class ClientError(TaskServiceError):
    code = "ClientError"
