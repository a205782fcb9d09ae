"""POST /v1/storage-events: MinIO's bucket notifications (its webhook target), matched against storage triggers.

The bearer token is checked like every /v1 call (MinIO sends it as `auth_token`); a bad notification is a 4xx that
writes nothing, and events no trigger watches are accepted (202) and counted as ignored, so MinIO does not retry
them forever.
"""
from __future__ import annotations

from flask import Blueprint, Response, current_app, jsonify, request

from taskservice.api.requests import json_body
from taskservice.api.schemas import StorageEventsResult
from taskservice.storage_events import StorageEvents, parse_notification

storage_events_api = Blueprint("storage_events", __name__, url_prefix="/v1")
NOTIFICATION_MAX_BYTES = 1024 * 1024


@storage_events_api.post("/storage-events")
def receive() -> tuple[Response, int]:
    services = current_app.extensions["taskservice"]
    events = parse_notification(json_body(request, max_bytes=NOTIFICATION_MAX_BYTES))
    published = StorageEvents(services.triggers, services.submitter).publish(events)
    return jsonify(StorageEventsResult.model_validate({"events": len(events), **published.view()}).dump()), 202
