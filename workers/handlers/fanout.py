"""`transcode-fanout`: one upload to several formats, now the `media-fanout` flow (a foreach over `dst_formats`, one
`transcode` step per format, each retried on its own). This function keeps the old name working: it checks the
event, starts the flow and returns the execution at once, holding no worker slot while the formats encode.

Event: {"bucket", "object", "output_dir", "dst_formats": ["mp4", "flv", …]} plus the optional encoding fields of
transcode that apply to every format ("resolution", "bitrate", "watermark_text", "preset", "max_output_bytes").
"""
from __future__ import annotations

from typing import Any

from workers.media import BadEvent
from workers.media.flow_start import flow_name, start_flow
from workers.media.formats import FORMATS, parse_format, parse_options
from workers.media.keys import parse_source
from workers.media.work import max_output_bytes

FLOW = "media-fanout"
SHARED = ("resolution", "bitrate", "watermark_text", "preset")


def check_fanout(event: Any) -> None:
    """Refuse a bad event before any format starts (a foreach would fail one format after another succeeded)."""
    parse_source(event)
    formats = event.get("dst_formats")
    if not isinstance(formats, list) or not formats or len(formats) > len(FORMATS):
        raise BadEvent(f"dst_formats must be a non-empty list of at most {len(FORMATS)} formats")
    if len({str(f).lower() for f in formats}) != len(formats):
        raise BadEvent("dst_formats lists a format twice")
    max_output_bytes(event)
    shared = {k: event[k] for k in SHARED if k in event}
    for name in formats:
        parse_options(shared, parse_format(name))


def handler(event: Any, context: Any) -> dict[str, Any]:
    check_fanout(event)
    return start_flow(context, flow_name(context, "transcode-fanout", FLOW), event, context.invocation_id)
