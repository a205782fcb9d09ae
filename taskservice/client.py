"""HTTP client of the REST API, used by the CLI (the requests boundary).

A 503 (the ledger or broker briefly away) is retried, honouring Retry-After, for up to `retry_for_s`; an
unreachable API is retried for a few seconds, for reads and for submissions. A submission is always safe to send
again because it carries an invocation id, chosen here when the caller gave none: a retry never starts the work
twice.
"""
from __future__ import annotations

import time
import uuid
from collections.abc import Callable
from typing import Any

import requests

from taskservice.errors import ClientError

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
            raise ApiError(response.status_code, error.get("code", str(response.status_code)),
                           error.get("message", response.reason), body, retry_after=response.headers.get("Retry-After"))
        return body

    # --- the calls the CLI makes --------------------------------------------------------------------------------
    def put_function(self, name: str, config: dict[str, Any]) -> Any:
        return self.request("PUT", f"/v1/functions/{name}", json_body=config, send_json=True)

    def list_functions(self) -> Any:
        return self.request("GET", "/v1/functions")["items"]

    def delete_function(self, name: str) -> None:
        self.request("DELETE", f"/v1/functions/{name}")

    def invoke(self, function: str, payload: Any, *, invocation_id: str | None = None) -> Any:
        """Submit; through an outage the same id is sent again. If an earlier try of this very call was accepted
        but its answer lost, the 409 that follows carries our own invocation (same payload) and is the answer."""
        chosen = invocation_id or new_invocation_id()
        try:
            return self.request("POST", f"/v1/functions/{function}/invocations", json_body=payload, send_json=True,
                                headers={"X-Invocation-Id": chosen}, resend_when_unreachable=True)
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
