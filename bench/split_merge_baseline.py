"""The split-merge benchmark's baseline: the waiting parent as main had it before flows (split, submit one
`transcode-segment` child per piece, wait for them holding a worker slot, merge). Kept here only to measure against
the `media-split-merge` flow; it is built from the same functions the flow's steps call (workers/media/segments.py),
so the two differ in orchestration only. Not shipped: a waiting parent deadlocks a pool with fewer free slots than
waiting parents (issue 12)."""
from __future__ import annotations

import time
from typing import Any

from workers.media.family import submit_or_adopt, wait_all
from workers.media.keys import child_id, output_key, parse_source, work_prefix
from workers.media.segments import merge_segments, plan_segments, remove_prefix, segment_options, segment_seconds
from workers.media.work import max_output_bytes, ranged, workdir


def handler(event: Any, context: Any) -> dict[str, Any]:
    source = parse_source(event)
    opts = segment_options(event)
    limit = max_output_bytes(event)
    iid = context.invocation_id
    prefix = work_prefix(source.output_dir, iid)
    with workdir() as work:
        (work / "plan").mkdir()
        plan = plan_segments(context.storage, source, work / "plan", prefix, segment_seconds(event),
                             ranged(context.progress, 1, 5, "splitting"))
        clock = time.monotonic()
        children = [submit_or_adopt(context, "transcode-segment",
                                    {"bucket": source.bucket, "object": s["object"], "output_key": s["output_key"],
                                     **opts.public(), "max_output_bytes": limit}, child_id(iid, f"seg{n:05d}"))
                    for n, s in enumerate(plan["segments"])]
        items = wait_all(context, children, start=5, end=90, what="segments")
        segments_s = time.monotonic() - clock
        (work / "merge").mkdir()
        merged = merge_segments(context.storage, source, [i["result"]["key"] for i in items], work / "merge",
                                output_key(source.output_dir, iid, opts.format.ext), opts, max_bytes=limit,
                                source_frames=plan["source_frames"], on_progress=ranged(context.progress, 90, 99,
                                                                                        "merging"))
    remove_prefix(context.storage, source.bucket, prefix)
    return {"outputs": [merged["output"]], "source": merged["source"],
            "segments": [{"invocationId": i["invocationId"], "cpu_s": i["result"]["cpu_s"]} for i in items],
            "timings": {**plan["timings"], "segments_s": round(segments_s, 3), **merged["timings"]}}
