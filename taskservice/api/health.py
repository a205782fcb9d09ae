"""/healthz and /openapi.json."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from taskservice import __version__
from taskservice.api.openapi import openapi_document
from taskservice.api.schemas import Health

health_api = Blueprint("health", __name__)


@health_api.get("/healthz")
def healthz() -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        database = "ok"
    except Exception as exc:  # report, do not raise: a health check answers even when the ledger is down
        database = f"unavailable: {type(exc).__name__}"
    status = 200 if database == "ok" else 503
    return jsonify(Health(status="ok" if status == 200 else "degraded", database=database,
                          version=__version__).dump()), status


@health_api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(current_app.extensions["taskservice"].settings.max_payload_bytes))
