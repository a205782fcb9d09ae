"""The web console (design §2 `GET /`): server-rendered Flask pages over the ledger, with a little JavaScript for
confirmation dialogs and live progress and logs.

It acts only through the same services as the API (TaskControl, Replayer); its reads live in ledger/stats.py.
Outside dev mode every page needs a signed-in session, and every POST a CSRF token; the API keeps its bearer tokens
and is not CSRF-checked (CSRF checks are switched off by default and switched on for console requests only).
"""
from __future__ import annotations

import logging

from flask import Flask, Response, render_template, request
from flask_wtf.csrf import CSRFError, CSRFProtect
from werkzeug.exceptions import HTTPException

from taskservice.console import (  # noqa: F401 - they add their routes
    auth,
    dead_letters,
    execution_page,
    flow_pages,
    invocations,
    pages,
)
from taskservice.console.blueprint import LIVE_ENDPOINTS, STATS_KEY, console
from taskservice.console.formatting import FILTERS
from taskservice.db import is_outage
from taskservice.errors import LedgerUnavailable, TaskServiceError
from taskservice.ledger.flows import EXECUTION_STATUSES
from taskservice.ledger.states import TERMINAL, Status
from taskservice.ledger.stats import ConsoleStats

log = logging.getLogger(__name__)


def register_console(app: Flask) -> None:
    """Mount the console at / on an app whose services are built (call after register_api)."""
    app.config.setdefault("WTF_CSRF_CHECK_DEFAULT", False)  # the API is not CSRF-checked; console POSTs are
    app.config.setdefault("WTF_CSRF_TIME_LIMIT", None)  # valid for the session: a page left open still works
    CSRFProtect(app)
    app.extensions[STATS_KEY] = ConsoleStats(app.extensions["taskservice"].engine)
    app.register_blueprint(console)
    app.jinja_env.filters.update(FILTERS)
    app.jinja_env.globals.update(STATUSES=list(Status), TERMINAL=TERMINAL, EXECUTION_STATUSES=EXECUTION_STATUSES)


def _error_page(status: int, title: str, message: str) -> tuple[str, int]:
    return render_template("error.html", status=status, title=title, message=message), status


@console.errorhandler(CSRFError)
def _csrf_refused(exc: CSRFError) -> tuple[str, int]:
    return _error_page(400, "Request refused", f"This form did not come from a page of this console, or its page "
                       f"is from an earlier session ({exc.description}). Nothing was changed; reload the page "
                       "and try again.")


@console.errorhandler(TaskServiceError)
def _service_error(exc: TaskServiceError) -> tuple[str, int] | tuple[Response, int]:
    if request.endpoint in LIVE_ENDPOINTS:
        return {"error": {"code": exc.code, "message": exc.message}}, exc.http_status  # type: ignore[return-value]
    titles = {400: "Bad request", 401: "Sign-in needed", 403: "Not allowed", 404: "Not found", 409: "Conflict",
              413: "Too large", 422: "Invalid input", 503: "Temporarily unavailable"}
    if exc.http_status >= 500:
        log.error("%s: %s", exc.code, exc.message)
    return _error_page(exc.http_status, titles.get(exc.http_status, "Error"), exc.message)


@console.errorhandler(HTTPException)
def _http_error(exc: HTTPException) -> tuple[str, int]:
    return _error_page(exc.code or 500, exc.name, exc.description or exc.name)


@console.errorhandler(Exception)
def _unexpected(exc: Exception) -> tuple[str, int] | tuple[Response, int]:
    if is_outage(exc):
        log.warning("ledger unreachable: %s", type(exc).__name__)
        return _service_error(LedgerUnavailable("The ledger (database) is unreachable right now. Nothing was "
                                                "changed; this page will work again once it is back."))
    log.exception("console error")
    return _error_page(500, "Internal error", "Something went wrong on the server; the server log has the details.")
