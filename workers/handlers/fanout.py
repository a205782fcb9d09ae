"""Multi-format fan-out: one upload, one child `transcode` invocation per format, one result with every output.

Event: {"bucket", "object", "output_dir", "dst_formats": ["mp4", "flv", …]} plus the optional encoding fields of
transcode that apply to every format ("resolution", "bitrate", "watermark_text", "preset", "max_output_bytes") and
"transcode_function" (default "transcode"). Children are submitted through the normal submission path with ids
`<this invocation>-<format>`; this parent waits for them (holding one worker slot), completes when they do, and
stopping it stops them.
"""
from __future__ import annotations

from typing import Any

from workers.media import BadEvent
from workers.media.family import function_name, submit_or_adopt, wait_all
from workers.media.formats import FORMATS, parse_format, parse_options
from workers.media.keys import child_id, parse_source
from workers.media.work import max_output_bytes

SHARED = ("resolution", "bitrate", "watermark_text", "preset")


def handler(event: Any, context: Any) -> dict[str, Any]:
    source = parse_source(event)
    formats = event.get("dst_formats")
    if not isinstance(formats, list) or not formats or len(formats) > len(FORMATS):
        raise BadEvent(f"dst_formats must be a non-empty list of at most {len(FORMATS)} formats")
    if len({str(f).lower() for f in formats}) != len(formats):
        raise BadEvent("dst_formats lists a format twice")
    function = function_name(event, "transcode_function", "transcode")
    limit = max_output_bytes(event)
    shared = {k: event[k] for k in SHARED if k in event}
    payloads = {}
    for name in formats:  # validate every format before submitting any child
        fmt = parse_format(name)
        opts = parse_options({**shared, **({} if fmt.videos else {"watermark_text": None})}, fmt)
        payloads[fmt.name] = {"bucket": source.bucket, "object": source.key, "output_dir": source.output_dir,
                              **opts.public(), "max_output_bytes": limit}
    children = [submit_or_adopt(context, function, payload, child_id(context.invocation_id, name))
                for name, payload in payloads.items()]
    context.logger.info("submitted %d transcode children: %s", len(children), ", ".join(c[1] for c in children))
    items = wait_all(context, children, start=2, end=99, what="formats")
    context.progress(100, "all formats done")
    return {"outputs": [out for item in items for out in item["result"]["outputs"]],
            "children": [{"function": i["function"], "invocationId": i["invocationId"], "format": name,
                          "attempts": i["attempts"]} for i, name in zip(items, payloads, strict=True)]}
