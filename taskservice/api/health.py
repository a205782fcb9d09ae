"""/healthz and /openapi.json."""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify
from sqlalchemy import text

from taskservice.api.openapi import openapi_document
from taskservice.api.schemas import Health
from taskservice.errors import LedgerUnavailable
from taskservice.version import __version__

health_api = Blueprint("health", __name__)


@health_api.get("/healthz")
def healthz() -> tuple[Response, int]:
    """Which dependency is down, if any. 503 when the ledger is unreachable (nothing works without it); a broker
    that is away only delays execution — submissions are still accepted and rung later — so it reads "degraded"
    with 200, and a load balancer keeps sending traffic."""
    services = current_app.extensions["taskservice"]
    try:
        with services.engine.connect() as conn:
            conn.execute(text("SELECT 1"))
        ledger = "ok"
    except Exception as exc:  # report, do not raise: a health check answers even when the ledger is down
        ledger = f"unavailable: {type(exc).__name__}"
    why = services.dispatcher.unreachable_because()
    broker = "ok" if why is None else f"unavailable: {why}"
    health = Health(status="ok" if ledger == broker == "ok" else "degraded", database=ledger, broker=broker,
                    version=__version__)
    response = jsonify(health.dump())
    if ledger != "ok":
        response.headers["Retry-After"] = str(LedgerUnavailable.retry_after_s)
    return response, 200 if ledger == "ok" else 503


@health_api.get("/openapi.json")
def openapi() -> Response:
    return jsonify(openapi_document(current_app.extensions["taskservice"].settings.max_payload_bytes))
