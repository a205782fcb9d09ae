"""Storage-trigger entry point of the media seed scenario: an upload (Function Compute's OSS event, as a storage
trigger delivers it) starts one `media-fanout` flow execution per uploaded object, to the formats below, and ends at
once with the executions listed (it used to wait for the outputs holding a worker slot; the executions' outputs list
them now: `GET /v1/flows/media-fanout/executions/<name>`).

Event: the OSS event `{"events": [{"eventName", "oss": {"bucket": {"name"}, "object": {"key", ...}}}]}`. Outputs go to
`out/<object name without extension>/`. Execution names derive from this invocation's id (a retry adopts them), and
this id derives from bucket, key and eTag, so one upload is transcoded once however often it is reported.
"""
from __future__ import annotations

from typing import Any

from workers.media import BadEvent
from workers.media.flow_start import flow_name, start_flow
from workers.media.keys import child_id

FORMATS = ("mp4", "webm", "m3u8")


def handler(event: Any, context: Any) -> dict[str, Any]:
    records = event.get("events") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        raise BadEvent("expected Function Compute's OSS event: {\"events\": [...]}")
    inputs = []
    for n, record in enumerate(records):
        try:
            bucket, key = record["oss"]["bucket"]["name"], record["oss"]["object"]["key"]
        except (KeyError, TypeError):
            raise BadEvent(f"events[{n}] has no oss.bucket.name / oss.object.key") from None
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "object"
        inputs.append((n, {"bucket": bucket, "object": key, "output_dir": f"out/{stem}",
                           "dst_formats": list(FORMATS)}))
    flow = flow_name(context, "media-upload", "media-fanout")
    return {"executions": [start_flow(context, flow, payload, child_id(context.invocation_id, f"fanout{n}"))
                           for n, payload in inputs]}
