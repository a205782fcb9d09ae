"""Split → parallel transcode → merge, for long videos, as the steps of the `media-split-merge` flow.

Flow input: {"bucket", "object", "output_dir"} plus optional "dst_format" (mp4, mov, flv, avi or webm; default mp4),
"segment_seconds" (default 30) and the transcode encoding fields. The steps:
- `media-split-plan` (`plan_handler`): cut the video at keyframes without re-encoding, upload the pieces, return the
  plan (one item per piece);
- `media-transcode-segment` (`segment_handler`): one piece, video only, encoded with the flow's options; the flow
  runs these in a foreach with maxConcurrency, each with its own retry, and a redrive re-runs only failed pieces;
- `media-merge` (`merge_handler`): join the encoded pieces with the concat demuxer (no re-encoding), add the source's
  audio encoded once over the whole length (in sync), verify the frame count equals the source's, upload, clean up.
No step waits for another: the flow engine does, holding no worker slot.

`transcode-split` (`handler`), the old parent that waited in a slot, now starts the flow and returns its name.
"""
from __future__ import annotations

from typing import Any

from workers.media import BadEvent
from workers.media.flow_start import flow_name, start_flow
from workers.media.keys import checked_key, output_key, parse_source, work_prefix
from workers.media.segments import (
    merge_segments,
    plan_segments,
    remove_prefix,
    segment_options,
    segment_seconds,
    transcode_segment,
)
from workers.media.work import max_output_bytes, ranged, workdir

FLOW = "media-split-merge"


def _run_name(event: dict[str, Any], context: Any) -> str:
    """The name intermediate and output keys derive from: the flow's execution (mapped in as `execution`), else
    this invocation (a plan or merge invoked on its own)."""
    name = event.get("execution") or context.invocation_id
    return checked_key(name, "execution")


def plan_handler(event: Any, context: Any) -> dict[str, Any]:
    source = parse_source(event)
    opts = segment_options(event)  # validated here, before any work, so a bad option fails the flow at once
    segment_s = segment_seconds(event)
    max_output_bytes(event)
    name = _run_name(event, context)
    prefix = work_prefix(source.output_dir, name)
    with workdir() as work:
        plan = plan_segments(context.storage, source, work, prefix, segment_s, ranged(context.progress, 5, 95,
                                                                                       "splitting"))
    context.logger.info("split %.1fs of video into %d segment(s) of ~%gs", plan["source_duration"],
                        len(plan["segments"]), segment_s)
    return {**plan, "work_prefix": prefix, "output_key": output_key(source.output_dir, name, opts.format.ext)}


def segment_handler(event: Any, context: Any) -> dict[str, Any]:
    """One piece. In the flow the piece is the foreach item `segment` ({"object", "output_key"}) and `object` is the
    whole source; called directly, `object` and `output_key` name the piece."""
    source = parse_source(event, output=False)
    item = event.get("segment")
    if item is not None:
        if not isinstance(item, dict):
            raise BadEvent("segment must be an object with object and output_key")
        event = {**event, "object": item.get("object"), "output_key": item.get("output_key")}
    with workdir() as work:
        return transcode_segment(context.storage, {**event, "bucket": source.bucket}, work,
                                 ranged(context.progress, 0, 95, "encoding"))


def merge_handler(event: Any, context: Any) -> dict[str, Any]:
    """Event: the flow's state after the foreach: `segments` is the list of iterations, each with its `result`."""
    source = parse_source(event)
    opts = segment_options(event)
    segments = event.get("segments")
    if not isinstance(segments, list) or not segments:
        raise BadEvent("segments must be the non-empty list of encoded segments")
    try:
        keys = [s["result"]["key"] for s in sorted(segments, key=lambda s: s["index"])]
    except (KeyError, TypeError):
        raise BadEvent("every segment needs its index and result.key (the transcode step's output)") from None
    frames = event.get("source_frames")
    name = _run_name(event, context)
    with workdir() as work:
        merged = merge_segments(context.storage, source, keys, work,
                                output_key(source.output_dir, name, opts.format.ext),
                                opts, max_bytes=max_output_bytes(event),
                                source_frames=frames if isinstance(frames, int) else None,
                                on_progress=ranged(context.progress, 5, 95, "merging"))
    # Keys derive from output_dir and the execution, never from a key in the event: nothing else can be removed.
    remove_prefix(context.storage, source.bucket, work_prefix(source.output_dir, name))
    context.progress(100, "merged")
    return {"outputs": [merged["output"]], "source": merged["source"], "timings": merged["timings"]}


def handler(event: Any, context: Any) -> dict[str, Any]:
    """`transcode-split`: starts `media-split-merge` with this event and returns at once (no slot held)."""
    if not isinstance(event, dict):
        raise BadEvent("the event must be a JSON object")
    return start_flow(context, flow_name(context, "transcode-split", FLOW), event, context.invocation_id)
