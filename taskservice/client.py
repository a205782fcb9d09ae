"""HTTP client of the REST API, used by the CLI (the requests boundary)."""
from __future__ import annotations

from typing import Any

import requests

from taskservice.errors import ClientError

DEFAULT_API_URL = "http://127.0.0.1:8000"


class ApiError(ClientError):
    """The API answered with an error document."""

    def __init__(self, status: int, code: str, message: str, body: dict[str, Any]) -> None:
        super().__init__(f"{code}: {message}")
        self.status = status
        self.code = code
        self.body = body


class Client:
    def __init__(self, base_url: str = DEFAULT_API_URL, *, timeout_s: float = 30.0, token: str | None = None) -> None:
        self.base_url = base_url.rstrip("/")
        self.timeout_s = timeout_s
        self.session = requests.Session()
        if token:
            self.session.headers["Authorization"] = f"Bearer {token}"

    def request(self, method: str, path: str, *, json_body: Any = None, send_json: bool = False,
                params: dict[str, Any] | None = None, headers: dict[str, str] | None = None) -> Any:
        url = f"{self.base_url}{path}"
        kwargs: dict[str, Any] = {"params": {k: v for k, v in (params or {}).items() if v is not None},
                                  "headers": headers or {}, "timeout": self.timeout_s}
        if send_json:
            kwargs["json"] = json_body
        try:
            response = self.session.request(method, url, **kwargs)
        except requests.ConnectionError:
            raise ClientError(f"cannot reach the taskservice API at {self.base_url}: is `taskservice dev` (or "
                              "`taskservice api`) running? Set --api-url or TASKSERVICE_API_URL.") from None
        except requests.Timeout:
            raise ClientError(f"the API at {self.base_url} did not answer within {self.timeout_s:g}s") from None
        if response.status_code == 204:
            return None
        try:
            body = response.json()
        except ValueError:
            raise ClientError(f"the API answered {response.status_code} with a non-JSON body") from None
        if response.status_code >= 400:
            error = body.get("error", {}) if isinstance(body, dict) else {}
            raise ApiError(response.status_code, error.get("code", str(response.status_code)),
                           error.get("message", response.reason), body)
        return body

    # --- the calls the CLI makes --------------------------------------------------------------------------------
    def put_function(self, name: str, config: dict[str, Any]) -> Any:
        return self.request("PUT", f"/v1/functions/{name}", json_body=config, send_json=True)

    def list_functions(self) -> Any:
        return self.request("GET", "/v1/functions")["items"]

    def delete_function(self, name: str) -> None:
        self.request("DELETE", f"/v1/functions/{name}")

    def invoke(self, function: str, payload: Any, *, invocation_id: str | None = None) -> Any:
        headers = {"X-Invocation-Id": invocation_id} if invocation_id else {}
        return self.request("POST", f"/v1/functions/{function}/invocations", json_body=payload, send_json=True,
                            headers=headers)

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
