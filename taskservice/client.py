"""The Python SDK and the CLI's HTTP client: one client of the REST API (the requests boundary).

`Client(api_url, token=None)` has the API's verbs with typed results (`Submitted`, `InvocationInfo`, `LogLine`,
`Page`, `ReplayResult`; for flows `FlowInfo`, `ExecutionStarted`, `ExecutionInfo`, `HistoryPage` from
flow_client.py) and typed errors (`NotFoundError` 404, `ConflictError` 409 with the existing invocation or
execution, `ValidationError` 400/422 with the flow step path at fault, `AuthError` 401/403, `PayloadTooLargeError`
413), all `ApiError`s. The lower-level `request` and the dict-returning calls stay for the CLI's JSON output.

A 503 (the ledger or broker briefly away) is retried, honouring Retry-After, for up to `retry_for_s`; an
unreachable API is retried for a few seconds, for reads and for submissions. A submission is always safe to send
again because it carries an invocation id (an execution start, its execution name), chosen here when the caller
gave none: a retry never starts the work twice.
"""
from __future__ import annotations

import builtins
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import requests

from taskservice.errors import ClientError
from taskservice.flow_client import (
    ExecutionInfo,
    ExecutionPage,
    ExecutionStarted,
    FlowInfo,
    HistoryEvent,
    HistoryPage,
)

DEFAULT_API_URL = "http://127.0.0.1:8000"
UNREACHABLE_PATIENCE_S = 5.0  # a restart of the API behind a balancer; longer silence means it is not running


class ApiError(ClientError):
    """The API answered with an error document."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any], *,
                 retry_after: str | None = None) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.body = body
        self.retry_after = retry_after
        self.tries = 1  # how many times the request was sent before this answer


class ValidationError(ApiError):
    """400 or 422: the request was refused as it stands (the message names the field); nothing was written."""

    @property
    def path(self) -> str | None:
        """For an invalid flow definition, the step path at fault (`""` for the definition as a whole)."""
        details = self.body.get("details")
        found = details.get("path") if isinstance(details, dict) else None
        return found if isinstance(found, str) else None


class AuthError(ApiError):
    """401 (no live token) or 403 (a read-only token asked to change something)."""


class NotFoundError(ApiError):
    """404: no such function, invocation, trigger or dead letter."""


class ConflictError(ApiError):
    """409: a duplicate invocation id (`existing` is the invocation already holding it) or execution name
    (`existing_execution`), or a stop/retry/redrive the state does not allow."""

    @property
    def existing(self) -> InvocationInfo | None:
        found = self.body.get("invocation")
        return InvocationInfo.from_api(found) if isinstance(found, dict) else None

    @property
    def existing_execution(self) -> ExecutionStarted | None:
        found = self.body.get("execution")
        return ExecutionStarted.from_api(found) if isinstance(found, dict) else None


class PayloadTooLargeError(ApiError):
    """413: the payload is over the server's limit."""


_ERRORS: dict[int, type[ApiError]] = {400: ValidationError, 422: ValidationError, 401: AuthError, 403: AuthError,
                                      404: NotFoundError, 409: ConflictError, 413: PayloadTooLargeError}


class WaitTimeout(ClientError):
    """`Client.wait` or `wait_execution` gave up before the invocation or execution ended; `last` is what it saw
    last."""

    def __init__(self, message: str, last: InvocationInfo | ExecutionInfo) -> None:
        super().__init__(message)
        self.last = last


TERMINAL_STATUSES = frozenset({"Succeeded", "Failed", "Stopped", "Expired", "Invalid"})


@dataclass(frozen=True)
class Submitted:
    """The answer to a submission (202)."""

    invocation_id: str
    request_id: str
    function: str
    status: str

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> Submitted:
        return cls(invocation_id=doc["invocationId"], request_id=doc["requestId"], function=doc["function"],
                   status=doc["status"])


@dataclass(frozen=True)
class InvocationInfo:
    """One invocation as the API shows it; `raw` is the whole document (transitions, destinations, children)."""

    function: str
    invocation_id: str
    request_id: str
    status: str
    attempts: int
    payload: Any
    result: Any
    error: str | None
    error_type: str | None
    condition: str | None
    progress_percent: float | None
    progress_message: str | None
    created_at: str | None
    started_at: str | None
    finished_at: str | None
    starts_at: str | None
    replay_of: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status in TERMINAL_STATUSES

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> InvocationInfo:
        progress = doc.get("progress") or {}
        return cls(function=doc["function"], invocation_id=doc["invocationId"], request_id=doc["requestId"],
                   status=doc["status"], attempts=doc.get("attempts", 0), payload=doc.get("payload"),
                   result=doc.get("result"), error=doc.get("error"), error_type=doc.get("errorType"),
                   condition=doc.get("condition"), progress_percent=progress.get("percent"),
                   progress_message=progress.get("message"), created_at=doc.get("createdAt"),
                   started_at=doc.get("startedAt"), finished_at=doc.get("finishedAt"),
                   starts_at=doc.get("startsAt"), replay_of=doc.get("replayOf"), raw=doc)


@dataclass(frozen=True)
class LogLine:
    at: str
    attempt: int
    level: str
    message: str


@dataclass(frozen=True)
class Page:
    """One keyset page of invocations, newest first; pass `next_cursor` back as `cursor` for the next."""

    items: list[InvocationInfo]
    next_cursor: str | None


@dataclass(frozen=True)
class ReplayResult:
    """What a replay did: the invocation a single replay submitted, or one outcome per record of a bulk replay
    (`{"function", "invocationId", "outcome": "submitted" | "duplicate" | "refused", "error"}`)."""

    submitted: Submitted | None
    outcomes: list[dict[str, Any]]
    raw: dict[str, Any] = field(repr=False, compare=False)


class Unreachable(ClientError):
    """No answer from the API (refused, reset or timed out)."""


def _retry_after(exc: ApiError, tries: int) -> float:
    try:
        return min(30.0, max(0.1, float(exc.retry_after or "")))
    except ValueError:
        return min(5.0, 0.5 * 2 ** (tries - 1))


def new_invocation_id() -> str:
    """An id for a submission whose caller chose none, made before the first try so every retry carries it."""
    return f"inv_{uuid.uuid4().hex}"


def new_execution_name() -> str:
    """The same for an execution start: the name is what makes a resent start harmless."""
    return f"exec_{uuid.uuid4().hex}"


def _every(page_of: Callable[..., Any], filters: dict[str, Any]) -> Iterator[Any]:
    """Follow next_cursor from the first page to the last: every item a keyset-paginated list selects."""
    cursor = None
    while True:
        page = page_of(**filters, cursor=cursor)
        yield from page.items
        if not page.next_cursor:
            return
        cursor = page.next_cursor


class Client:
    def __init__(self, base_url: str = DEFAULT_API_URL, *, timeout_s: float = 30.0, token: str | None = None,
                 retry_for_s: float = 60.0, on_retry: Callable[[str, float], None] | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.retry_for_s = retry_for_s
        self.on_retry = on_retry  # told (reason, seconds until the next try) before each wait
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, json_body: Any = None, send_json: bool = False,
                params: dict[str, Any] | None = None, headers: dict[str, str] | None = None,
                resend_when_unreachable: bool | None = None) -> Any:
        """One API call, retried through a 503 (any method: the server changed nothing) and, for reads or when
        `resend_when_unreachable`, through a connection failure, until `retry_for_s` has passed."""
        resend = method == "GET" if resend_when_unreachable is None else resend_when_unreachable
        started = time.monotonic()
        deadline = started + self.retry_for_s
        tries = 0
        while True:
            tries += 1
            try:
                return self._request_once(method, path, json_body=json_body, send_json=send_json, params=params,
                                          headers=headers)
            except ApiError as exc:
                exc.tries = tries
                if exc.status != 503:
                    raise
                wait = _retry_after(exc, tries)
                reason = f"the API is unavailable for now ({exc.code})"
                failure: ClientError = exc
            except Unreachable as exc:
                if not resend:
                    raise
                wait, reason, failure = min(2.0, 0.25 * 2 ** (tries - 1)), "the API is unreachable", exc
                if time.monotonic() + wait > started + UNREACHABLE_PATIENCE_S:
                    raise  # a server that is not there at all is reported quickly: probably not started
            if time.monotonic() + wait > deadline:
                raise failure
            if self.on_retry is not None:
                self.on_retry(reason, wait)
            time.sleep(wait)

    def _request_once(self, method: str, path: str, *, json_body: Any, send_json: bool,
                      params: dict[str, Any] | None, headers: dict[str, str] | None) -> Any:
        url = f"{self.base_url}{path}"
        kwargs: dict[str, Any] = {"params": {k: v for k, v in (params or {}).items() if v is not None},
                                  "headers": headers or {}, "timeout": self.timeout_s}
        if send_json:
            kwargs["json"] = json_body
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.ConnectionError:
            raise Unreachable(f"cannot reach the taskservice API at {self.base_url}: is `taskservice dev` (or "
                              "`taskservice api`) running? Set --api-url or TASKSERVICE_API_URL.") from None
        except requests.Timeout:
            raise Unreachable(f"the API at {self.base_url} did not answer within {self.timeout_s:g}s") from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            raise ClientError(f"the API answered {response.status_code} with a non-JSON body") from None
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            kind = _ERRORS.get(response.status_code, ApiError)
            raise kind(response.status_code, error.get("code", str(response.status_code)),
                           error.get("message", response.reason), body, retry_after=response.headers.get("Retry-After"))
        return body

    # --- the calls the CLI makes --------------------------------------------------------------------------------
    def put_function(self, name: str, config: dict[str, Any]) -> Any:
        return self.request("PUT", f"/v1/functions/{name}", json_body=config, send_json=True)

    def list_functions(self) -> Any:
        return self.request("GET", "/v1/functions")["items"]

    def delete_function(self, name: str) -> None:
        self.request("DELETE", f"/v1/functions/{name}")

    def submit(self, function: str, payload: Any, *, invocation_id: str | None = None, delay_s: float | None = None
               ) -> Any:
        """Submit (the raw 202 document); through an outage the same id is sent again. If an earlier try of this
        very call was accepted but its answer lost, the 409 that follows carries our own invocation (same payload)
        and is the answer. `delay_s` (0..3600) delays the start (X-Invocation-Delay)."""
        chosen = invocation_id or new_invocation_id()
        headers = {"X-Invocation-Id": chosen}
        if delay_s is not None:
            headers["X-Invocation-Delay"] = f"{delay_s:g}"
        try:
            return self.request("POST", f"/v1/functions/{function}/invocations", json_body=payload, send_json=True,
                                headers=headers, resend_when_unreachable=True)
        except ApiError as exc:
            existing = exc.body.get("invocation") if exc.status == 409 else None
            if exc.tries > 1 and isinstance(existing, dict) and existing.get("payload") == payload:
                return {key: existing.get(key) for key in ("invocationId", "requestId", "function", "status")}
            raise

    def get_invocation(self, function: str, invocation_id: str) -> Any:
        return self.request("GET", f"/v1/functions/{function}/invocations/{invocation_id}")

    def logs(self, function: str, invocation_id: str, *, attempt: int | None = None) -> Any:
        return self.request("GET", f"/v1/functions/{function}/invocations/{invocation_id}/logs",
                            params={"attempt": attempt})

    def list_invocations(self, **params: Any) -> Any:
        return self.request("GET", "/v1/invocations", params=params)

    def stop(self, function: str, invocation_id: str) -> Any:
        return self.request("POST", f"/v1/functions/{function}/invocations/{invocation_id}/stop")

    def retry(self, function: str, invocation_id: str, *, include_succeeded: bool = False) -> Any:
        return self.request("POST", f"/v1/functions/{function}/invocations/{invocation_id}/retry",
                            json_body={"includeSucceeded": include_succeeded}, send_json=True)

    def bulk(self, action: str, selection: dict[str, Any]) -> Any:
        """Bulk `stop` or `retry` of every invocation the selection (function, status, prefix, since, until) picks."""
        return self.request("POST", f"/v1/invocations/{action}", json_body=selection, send_json=True)

    # --- the SDK: typed results ---------------------------------------------------------------------------------
    def invoke(self, function: str, payload: Any = None, *, invocation_id: str | None = None,
               delay_s: float | None = None) -> Submitted:
        """Submit an asynchronous invocation; safe to call again with the same `invocation_id` (409 otherwise).
        Raises NotFoundError for an unknown function, ConflictError for a taken id, ValidationError for bad input."""
        return Submitted.from_api(self.submit(function, payload, invocation_id=invocation_id, delay_s=delay_s))

    def get(self, function: str, invocation_id: str) -> InvocationInfo:
        return InvocationInfo.from_api(self.get_invocation(function, invocation_id))

    def list(self, *, function: str | None = None, status: str | builtins.list[str] | None = None,
             prefix: str | None = None, since: str | None = None, until: str | None = None, limit: int | None = None,
             cursor: str | None = None) -> Page:
        """One page of invocations, newest first (see `iter_invocations` for all of them)."""
        statuses = ",".join(status) if isinstance(status, builtins.list) else status
        page = self.list_invocations(function=function, status=statuses, prefix=prefix, since=since, until=until,
                                     limit=limit, cursor=cursor)
        return Page(items=[InvocationInfo.from_api(i) for i in page["items"]], next_cursor=page["next_cursor"])

    def iter_invocations(self, **filters: Any) -> Iterator[InvocationInfo]:
        """Every invocation the filters select, page after page."""
        return _every(self.list, filters)

    def log_lines(self, function: str, invocation_id: str, *, attempt: int | None = None
                  ) -> builtins.list[LogLine]:
        return [LogLine(at=line["at"], attempt=line["attempt"], level=line["level"], message=line["message"])
                for line in self.logs(function, invocation_id, attempt=attempt)["items"]]

    def stop_invocation(self, function: str, invocation_id: str) -> InvocationInfo:
        """Durable stop; ConflictError once it has ended."""
        return InvocationInfo.from_api(self.stop(function, invocation_id))

    def retry_invocation(self, function: str, invocation_id: str, *, include_succeeded: bool = False
                         ) -> InvocationInfo:
        """Re-run an ended invocation under the same id; ConflictError while it is still live."""
        return InvocationInfo.from_api(self.retry(function, invocation_id, include_succeeded=include_succeeded))

    def wait(self, function: str, invocation_id: str, *, timeout_s: float | None = None, poll_s: float = 0.3,
             progress: Callable[[InvocationInfo], None] | None = None) -> InvocationInfo:
        """Poll until the invocation ends and return it; `progress` is called with every change seen (status,
        percent or message). Raises WaitTimeout after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: tuple[Any, ...] | None = None
        while True:
            info = self.get(function, invocation_id)
            now_seen = (info.status, info.progress_percent, info.progress_message, info.attempts)
            if progress is not None and now_seen != seen:
                progress(info)
            seen = now_seen
            if info.ended:
                return info
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise WaitTimeout(f"{function}/{invocation_id} is still {info.status} after {timeout_s:g}s", info)
            time.sleep(poll_s)

    def replay(self, dead_letter_id: int | None = None, *, payload: Any = None, force: bool = False,
               **selection: Any) -> ReplayResult:
        """Replay one dead letter (optionally with an edited `payload`), or, without an id, many by `function`,
        `condition`, `since`, `until`, `limit` or external `records`. A second replay of one failure is a
        ConflictError (one) or reported as a duplicate (many) unless `force`."""
        if dead_letter_id is not None:
            if selection:
                raise ValueError("give a dead-letter id or a selection, not both")
            body: dict[str, Any] = {"force": force}
            if payload is not None:
                body["payload"] = payload
            raw = self.request("POST", f"/v1/dead-letters/{int(dead_letter_id)}/replay", json_body=body,
                               send_json=True)
            return ReplayResult(submitted=Submitted.from_api(raw), outcomes=[], raw=raw)
        raw = self.request("POST", "/v1/dead-letters/replay", json_body={**selection, "force": force},
                           send_json=True)
        return ReplayResult(submitted=None, outcomes=builtins.list(raw.get("items", [])), raw=raw)

    def dead_letters(self, **filters: Any) -> Any:
        return self.request("GET", "/v1/dead-letters", params=filters)

    def put_trigger(self, name: str, config: dict[str, Any]) -> Any:
        return self.request("PUT", f"/v1/triggers/{name}", json_body=config, send_json=True)

    def get_trigger(self, name: str) -> Any:
        return self.request("GET", f"/v1/triggers/{name}")

    def list_triggers(self) -> Any:
        return self.request("GET", "/v1/triggers")["items"]

    def delete_trigger(self, name: str) -> None:
        self.request("DELETE", f"/v1/triggers/{name}")

    # --- flows (design §7) ----------------------------------------------------------------------------------------
    def put_flow(self, name: str, definition: str | dict[str, Any], *, description: str | None = None,
                 on_success: str | None = None, on_failure: str | None = None) -> FlowInfo:
        """Deploy or replace flow NAME; `definition` is YAML/JSON text (kept as written) or a dict. An invalid
        definition is a ValidationError whose `path` names the step at fault; nothing is written then."""
        body: dict[str, Any] = {"definition": definition, "on_success": on_success, "on_failure": on_failure}
        if description is not None:
            body["description"] = description
        return FlowInfo.from_api(self.request("PUT", f"/v1/flows/{name}", json_body=body, send_json=True))

    def get_flow(self, name: str) -> FlowInfo:
        return FlowInfo.from_api(self.request("GET", f"/v1/flows/{name}"))

    def list_flows(self) -> builtins.list[FlowInfo]:
        return [FlowInfo.from_api(f) for f in self.request("GET", "/v1/flows")["items"]]

    def delete_flow(self, name: str) -> None:
        """Executions already started run to their end on the definition they started with."""
        self.request("DELETE", f"/v1/flows/{name}")

    def start_execution(self, flow: str, input: dict[str, Any] | None = None, *, name: str | None = None
                        ) -> ExecutionStarted:
        """Start an execution of FLOW with `input` (a JSON object; the state starts as it). Through an outage the
        same name is sent again; if an earlier try was accepted but its answer lost, the 409 that follows names our
        own execution (same input) and is the answer. Otherwise a taken name is a ConflictError whose
        `existing_execution` is the execution holding it."""
        chosen = name or new_execution_name()
        body = {} if input is None else input
        try:
            raw = self.request("POST", f"/v1/flows/{flow}/executions", json_body=body, send_json=True,
                               headers={"X-Execution-Name": chosen}, resend_when_unreachable=True)
        except ConflictError as exc:
            if exc.tries > 1 and exc.existing_execution is not None \
                    and self.get_execution(flow, chosen).input == body:
                return exc.existing_execution
            raise
        return ExecutionStarted.from_api(raw)

    def get_execution(self, flow: str, name: str) -> ExecutionInfo:
        """The execution with its steps (one entry per step run) and input and output."""
        return ExecutionInfo.from_api(self.request("GET", f"/v1/flows/{flow}/executions/{name}"))

    def list_executions(self, *, flow: str | None = None, status: str | builtins.list[str] | None = None,
                        prefix: str | None = None, since: str | None = None, until: str | None = None,
                        limit: int | None = None, cursor: str | None = None) -> ExecutionPage:
        """One page of executions, newest first (see `iter_executions` for all of them)."""
        statuses = ",".join(status) if isinstance(status, builtins.list) else status
        page = self.request("GET", "/v1/executions", params={
            "flow": flow, "status": statuses, "prefix": prefix, "since": since, "until": until, "limit": limit,
            "cursor": cursor})
        return ExecutionPage(items=[ExecutionInfo.from_api(e) for e in page["items"]],
                             next_cursor=page["next_cursor"])

    def iter_executions(self, **filters: Any) -> Iterator[ExecutionInfo]:
        """Every execution the filters select, page after page."""
        return _every(self.list_executions, filters)

    def history(self, flow: str, name: str, *, after: int = 0, limit: int | None = None) -> HistoryPage:
        """The execution's events after event id `after`, oldest first; ask again with `after=page.last` for the
        ones that follow."""
        raw = self.request("GET", f"/v1/flows/{flow}/executions/{name}/history",
                           params={"after": after, "limit": limit})
        return HistoryPage(items=[HistoryEvent.from_api(e) for e in raw["items"]], last=raw["last"], raw=raw)

    def stop_execution(self, flow: str, name: str) -> ExecutionStarted:
        """Durable stop (Stopping, then Stopped once its running step invocations are killed); ConflictError once
        it has ended."""
        return ExecutionStarted.from_api(self.request("POST", f"/v1/flows/{flow}/executions/{name}/stop"))

    def redrive_execution(self, flow: str, name: str) -> ExecutionStarted:
        """Resume a Failed, Stopped or TimedOut execution at the steps that did not succeed; ConflictError
        otherwise."""
        return ExecutionStarted.from_api(self.request("POST", f"/v1/flows/{flow}/executions/{name}/redrive"))

    def wait_execution(self, flow: str, name: str, *, timeout_s: float | None = None, poll_s: float = 0.3,
                       progress: Callable[[ExecutionInfo], None] | None = None) -> ExecutionInfo:
        """Poll until the execution ends and return it; `progress` is called with every change seen (status or a
        step's status). Raises WaitTimeout after `timeout_s`."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        seen: tuple[Any, ...] | None = None
        while True:
            info = self.get_execution(flow, name)
            now_seen = (info.status, tuple((s.path, s.visit, s.status, s.attempts) for s in info.steps))
            if progress is not None and now_seen != seen:
                progress(info)
            seen = now_seen
            if info.ended:
                return info
            if deadline is not None and time.monotonic() + poll_s > deadline:
                raise WaitTimeout(f"execution {name} of {flow} is still {info.status} after {timeout_s:g}s", info)
            time.sleep(poll_s)
