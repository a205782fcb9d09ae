"""Every error leaves the API as {"error": {"code", "message"}} with the status its class names."""
from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from werkzeug.exceptions import HTTPException

from taskservice.db import is_outage
from taskservice.errors import DuplicateExecution, DuplicateInvocation, LedgerUnavailable, TaskServiceError, Unavailable

log = logging.getLogger(__name__)


def error_response(status: int, code: str, message: str, **extra: Any) -> Response:
    response = jsonify({"error": {"code": code, "message": message}, **extra})
    response.status_code = status
    return response


def register_error_handlers(app: Flask) -> None:
    @app.errorhandler(TaskServiceError)
    def _service_error(exc: TaskServiceError) -> Response:
        extra: dict[str, Any] = {}
        if isinstance(exc, DuplicateInvocation):
            from taskservice.api.views import invocation_view
            services = app.extensions["taskservice"]
            existing = services.ledger.get_by_pk(exc.existing["pk"])
            if existing is not None:
                extra["invocation"] = invocation_view(existing)
        elif isinstance(exc, DuplicateExecution):
            from taskservice.api.flows import started_view
            extra["execution"] = started_view(
                app.extensions["taskservice"].flows.get_execution_by_pk(exc.existing["pk"]))
        elif exc.details is not None:
            extra["details"] = exc.details
        if exc.http_status >= 500:
            log.error("%s: %s", exc.code, exc.message)
        response = error_response(exc.http_status, exc.code, exc.message, **extra)
        if isinstance(exc, Unavailable):
            response.headers["Retry-After"] = str(exc.retry_after_s)
        return response

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> Response:
        """werkzeug's own answers (404 for an unknown path, 405 …) in our error shape, keeping the headers they
        carry: a 405 must say which methods the resource has (`Allow`, RFC 9110 §15.5.6)."""
        code = type(exc).__name__
        response = error_response(exc.code or 500, code, exc.description or code)
        for name, value in exc.get_headers():
            if name.lower() != "content-type":
                response.headers[name] = value
        return response

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> Response:
        if is_outage(exc):  # a database restart or a cut link is not a bug: say so, and when to come back
            log.warning("ledger unreachable: %s", type(exc).__name__)
            return _service_error(LedgerUnavailable("the ledger (database) is unreachable right now; nothing was "
                                                    "changed — send the same request again shortly"))
        return error_response(500, "InternalError", "internal error; see the server log")
