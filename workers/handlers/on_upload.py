"""Storage-trigger entry point of the media seed scenario: an upload (Function Compute's OSS event, as a storage
trigger delivers it) becomes one `transcode-fanout` child per uploaded object, to the formats below, and this
invocation ends with every output listed.

Event: the OSS event `{"events": [{"eventName", "oss": {"bucket": {"name"}, "object": {"key", ...}}}]}`. Outputs go to
`out/<object name without extension>/`. Child ids derive from this invocation's id (a retry re-adopts them), and this
id derives from bucket, key and eTag, so one upload is transcoded once however often it is reported. Like the
fan-out itself, it waits for its children holding one worker slot.
"""
from __future__ import annotations

from typing import Any

from workers.media import BadEvent
from workers.media.family import submit_or_adopt, wait_all
from workers.media.keys import child_id

FORMATS = ("mp4", "webm", "m3u8")


def handler(event: Any, context: Any) -> dict[str, Any]:
    records = event.get("events") if isinstance(event, dict) else None
    if not isinstance(records, list) or not records:
        raise BadEvent("expected Function Compute's OSS event: {\"events\": [...]}")
    children = []
    for n, record in enumerate(records):
        try:
            bucket, key = record["oss"]["bucket"]["name"], record["oss"]["object"]["key"]
        except (KeyError, TypeError):
            raise BadEvent(f"events[{n}] has no oss.bucket.name / oss.object.key") from None
        if not str(record.get("eventName", "")).startswith("ObjectCreated:"):
            continue
        stem = key.rsplit("/", 1)[-1].rsplit(".", 1)[0] or "object"
        payload = {"bucket": bucket, "object": key, "output_dir": f"out/{stem}", "dst_formats": list(FORMATS)}
        children.append(submit_or_adopt(context, "transcode-fanout", payload,
                                        child_id(context.invocation_id, f"fanout{n}")))
    if not children:
        return {"outputs": []}
    items = wait_all(context, children, start=1, end=99, what="uploads")
    return {"outputs": [out for item in items for out in item["result"]["outputs"]]}
