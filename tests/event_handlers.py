"""Handlers of the event-source tests (workers import them as tests.event_handlers:<name>)."""
from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any


def upload_text(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Write event["text"] to event["bucket"]/event["key"] through context.storage (the storage boundary)."""
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "body"
        path.write_text(event["text"])
        context.storage.ensure_bucket(event["bucket"])
        info = context.storage.upload(event["bucket"], event["key"], path)
    return {"size": info.size, "etag": info.etag}
