"""REST API v1 (design §2): blueprints, request parsing and the single error handler."""
from __future__ import annotations

from flask import Flask

from taskservice.api.auth import register_api_auth
from taskservice.api.dead_letters import dead_letters_api
from taskservice.api.errors import register_error_handlers
from taskservice.api.flows import flows_api
from taskservice.api.functions import functions_api
from taskservice.api.health import health_api
from taskservice.api.invocations import invocations_api
from taskservice.api.metrics import metrics_api
from taskservice.api.storage_events import storage_events_api
from taskservice.api.triggers import triggers_api


def register_api(app: Flask) -> None:
    register_api_auth(app)
    app.register_blueprint(health_api)
    app.register_blueprint(functions_api)
    app.register_blueprint(invocations_api)
    app.register_blueprint(metrics_api)
    app.register_blueprint(dead_letters_api)
    app.register_blueprint(triggers_api)
    app.register_blueprint(storage_events_api)
    app.register_blueprint(flows_api)
    register_error_handlers(app)
