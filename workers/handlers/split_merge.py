"""Split → parallel transcode → merge, for long videos.

Event: {"bucket", "object", "output_dir"} plus optional "dst_format" (mp4, mov, flv, avi or webm; default mp4),
"segment_seconds" (default 30), the transcode encoding fields, and "segment_function" (default
"transcode-segment", deployed with `segment_handler`).

The parent cuts the video stream at keyframes without re-encoding, uploads the pieces, submits one child per piece
(each retried on its own), waits, joins the encoded pieces with the concat demuxer (no re-encoding) and adds the
source's audio, encoded once over the whole length so it stays in sync. Every frame survives: the split copies
packets and the segment encode passes timestamps through, so the merged frame count equals the source's.
"""
from __future__ import annotations

import resource
import time
from typing import Any

from taskservice.storage import ObjectInfo
from workers.media import BadEvent
from workers.media.family import function_name, submit_or_adopt, wait_all
from workers.media.ffmpeg import encode_segment, merge, probe, split_video
from workers.media.formats import SEGMENT_FORMATS, parse_format, parse_options
from workers.media.keys import checked_key, child_id, output_key, parse_source, work_prefix
from workers.media.work import fetch_and_probe, max_output_bytes, ranged, workdir


def _segment_seconds(event: dict[str, Any]) -> float:
    value = event.get("segment_seconds", 30)
    if not isinstance(value, int | float) or not 1 <= value <= 3600:
        raise BadEvent("segment_seconds must be a number in 1..3600")
    return float(value)


def _children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def handler(event: Any, context: Any) -> dict[str, Any]:
    source = parse_source(event)
    fmt = parse_format(event.get("dst_format", "mp4"), SEGMENT_FORMATS)
    opts = parse_options(event, fmt)
    segment_s = _segment_seconds(event)
    function = function_name(event, "segment_function", "transcode-segment")
    limit = max_output_bytes(event)
    storage, iid = context.storage, context.invocation_id
    prefix = work_prefix(source.output_dir, iid)
    timings: dict[str, float] = {}
    with workdir() as work:
        clock = time.monotonic()
        src = fetch_and_probe(storage, source.bucket, source.key, work)
        if src.video_codec is None:
            raise BadEvent("split and merge needs a video stream; use transcode for audio")
        timings["download_s"] = time.monotonic() - clock
        clock, cpu = time.monotonic(), _children_cpu_s()
        (work / "parts").mkdir()
        parts = split_video(src, work / "parts", segment_s, ranged(context.progress, 1, 5, "splitting"))
        timings["split_s"], timings["split_cpu_s"] = time.monotonic() - clock, _children_cpu_s() - cpu
        context.logger.info("split %.1fs of video into %d segment(s) of ~%gs", src.duration_s, len(parts), segment_s)
        clock = time.monotonic()
        children = []
        for n, part in enumerate(parts):
            part_key = f"{prefix}/part_{n:05d}.mkv"
            storage.upload(source.bucket, part_key, part)
            payload = {"bucket": source.bucket, "object": part_key, "output_key": f"{prefix}/enc_{n:05d}.mkv",
                       **opts.public(), "max_output_bytes": limit}
            children.append(submit_or_adopt(context, function, payload, child_id(iid, f"seg{n:05d}")))
        timings["submit_s"] = time.monotonic() - clock
        clock = time.monotonic()
        items = wait_all(context, children, start=5, end=90, what="segments")
        timings["segments_s"] = time.monotonic() - clock
        clock, cpu = time.monotonic(), _children_cpu_s()
        merged = work / "merge"
        merged.mkdir()
        encoded = []
        for n, item in enumerate(items):
            path = merged / f"enc_{n:05d}.mkv"
            storage.download(source.bucket, item["result"]["key"], path)
            encoded.append(path)
        dst = merged / f"output.{fmt.ext}"
        merge(encoded, src, dst, opts, max_bytes=limit, on_progress=ranged(context.progress, 90, 97, "merging"))
        timings["merge_s"], timings["merge_cpu_s"] = time.monotonic() - clock, _children_cpu_s() - cpu
        clock = time.monotonic()
        info = storage.upload(source.bucket, output_key(source.output_dir, iid, fmt.ext), dst,
                              content_type=fmt.content_type)
        duration = probe(dst).duration_s
        storage.remove(source.bucket, [o.key for o in storage.list(source.bucket, prefix + "/")])
        timings["upload_s"] = time.monotonic() - clock
    context.progress(100, "merged")
    return {"outputs": [{"bucket": source.bucket, "key": info.key, "size": info.size, "duration": round(duration, 3)}],
            "source": {"duration": round(src.duration_s, 3)},
            "segments": [{"invocationId": i["invocationId"], "attempts": i["attempts"],
                          "encode_s": i["result"]["encode_s"], "cpu_s": i["result"]["cpu_s"],
                          "duration": i["result"]["duration"]} for i in items],
            "timings": {k: round(v, 3) for k, v in timings.items()}}


def segment_handler(event: Any, context: Any) -> dict[str, Any]:
    """One segment: video only, encoded with the parent's options, uploaded to the key the parent chose."""
    source = parse_source(event, output=False)
    out_key = checked_key(event.get("output_key"), "output_key")
    fmt = parse_format(event.get("dst_format", "mp4"), SEGMENT_FORMATS)
    opts = parse_options(event, fmt)
    with workdir() as work:
        src = fetch_and_probe(context.storage, source.bucket, source.key, work)
        (work / "out").mkdir()
        dst = work / "out" / "segment.mkv"
        clock, cpu = time.monotonic(), _children_cpu_s()
        encode_segment(src, dst, opts, max_bytes=max_output_bytes(event),
                       on_progress=ranged(context.progress, 0, 95, "encoding"))
        encode_s, cpu_s = time.monotonic() - clock, _children_cpu_s() - cpu
        info: ObjectInfo = context.storage.upload(source.bucket, out_key, dst, content_type="video/x-matroska")
    return {"key": info.key, "size": info.size, "duration": round(src.duration_s, 3),
            "encode_s": round(encode_s, 3), "cpu_s": round(cpu_s, 3)}
