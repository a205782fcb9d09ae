"""The console's one blueprint and the two things every page reads: the services and the console's queries."""
from __future__ import annotations

from flask import Blueprint, current_app

from taskservice.ledger.stats import ConsoleStats
from taskservice.services import Services

console = Blueprint("console", __name__, template_folder="templates", static_folder="static",
                    static_url_path="/static/console")

STATS_KEY = "taskservice.console_stats"
#: Endpoints a page polls: they answer JSON errors (a 401 rather than a redirect to the sign-in page).
LIVE_ENDPOINTS = frozenset({"console.live", "console.execution_live"})


def services() -> Services:
    return current_app.extensions["taskservice"]  # type: ignore[no-any-return]


def stats() -> ConsoleStats:
    return current_app.extensions[STATS_KEY]  # type: ignore[no-any-return]
