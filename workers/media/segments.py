"""Split → transcode segments → merge, as steps that each do one job: plan (cut the video at keyframes and upload
the pieces), encode one piece, merge the encoded pieces. The flow `media-split-merge` runs them as its steps; the
split-merge benchmark's waiting-parent baseline (bench/) calls the same functions, so there is one implementation.

Frame-exact: the split copies packets (cut at keyframes, timestamps reset per piece), a segment encode passes
timestamps through, and the merge joins with the concat demuxer without re-encoding, so the merged frame count equals
the source's; `merge_segments` counts both and refuses a merge that lost or gained a frame.
"""
from __future__ import annotations

import resource
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from taskservice.storage import Storage
from workers.media import BadEvent, MediaFailed
from workers.media.ffmpeg import count_frames, encode_segment, merge, probe, split_video
from workers.media.formats import SEGMENT_FORMATS, EncodeOptions, parse_format, parse_options
from workers.media.keys import Source, checked_key
from workers.media.work import fetch_and_probe, max_output_bytes

Progress = Callable[[float], None]


def segment_seconds(event: dict[str, Any]) -> float:
    value = event.get("segment_seconds", 30)
    if not isinstance(value, int | float) or isinstance(value, bool) or not 1 <= value <= 3600:
        raise BadEvent("segment_seconds must be a number in 1..3600")
    return float(value)


def segment_options(event: dict[str, Any]) -> EncodeOptions:
    """The encoding a split-merge produces: one of the single-file formats, validated once for every step."""
    return parse_options(event, parse_format(event.get("dst_format", "mp4"), SEGMENT_FORMATS))


def children_cpu_s() -> float:
    """CPU of the ffmpeg runs this process has reaped: what a step reports as its own encoding cost."""
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def plan_segments(storage: Storage, source: Source, work: Path, prefix: str, segment_s: float,
                  on_progress: Progress) -> dict[str, Any]:
    """Download and probe the source, cut its video at keyframes into ~segment_s pieces (no re-encoding), upload
    each piece under `prefix`; returns the plan: one {"index", "object", "output_key"} per piece, the source's
    duration and frame count (what the merge must reproduce), and timings."""
    clock = time.monotonic()
    src = fetch_and_probe(storage, source.bucket, source.key, work)
    if src.video_codec is None:
        raise BadEvent("split and merge needs a video stream; use transcode for audio")
    download_s = time.monotonic() - clock
    clock, cpu = time.monotonic(), children_cpu_s()
    (work / "parts").mkdir()
    parts = split_video(src, work / "parts", segment_s, on_progress)
    split_s, split_cpu_s = time.monotonic() - clock, children_cpu_s() - cpu
    segments = []
    for n, part in enumerate(parts):
        part_key = f"{prefix}/part_{n:05d}.mkv"
        storage.upload(source.bucket, part_key, part)
        segments.append({"index": n, "object": part_key, "output_key": f"{prefix}/enc_{n:05d}.mkv"})
    return {"segments": segments, "source_duration": round(src.duration_s, 3), "source_frames": count_frames(src.path),
            "timings": {"download_s": round(download_s, 3), "split_s": round(split_s, 3),
                        "split_cpu_s": round(split_cpu_s, 3)}}


def transcode_segment(storage: Storage, event: dict[str, Any], work: Path, on_progress: Progress
                      ) -> dict[str, Any]:
    """One piece: video only, encoded with the split's options, uploaded to the key the plan chose."""
    bucket, key = event["bucket"], checked_key(event.get("object"), "object")
    out_key = checked_key(event.get("output_key"), "output_key")
    opts = segment_options(event)
    src = fetch_and_probe(storage, bucket, key, work)
    (work / "out").mkdir()
    dst = work / "out" / "segment.mkv"
    clock, cpu = time.monotonic(), children_cpu_s()
    encode_segment(src, dst, opts, max_bytes=max_output_bytes(event), on_progress=on_progress)
    encode_s, cpu_s = time.monotonic() - clock, children_cpu_s() - cpu
    info = storage.upload(bucket, out_key, dst, content_type="video/x-matroska")
    return {"key": info.key, "size": info.size, "duration": round(src.duration_s, 3),
            "encode_s": round(encode_s, 3), "cpu_s": round(cpu_s, 3)}


def merge_segments(storage: Storage, source: Source, encoded_keys: list[str], work: Path, output_key: str,
                   opts: EncodeOptions, *, max_bytes: int, source_frames: int | None, on_progress: Progress
                   ) -> dict[str, Any]:
    """Join the encoded pieces (in order) with the source's audio, encoded once over the whole length; check the
    frame count against the source's, upload the result. Raises MediaFailed (retryable) on a frame mismatch."""
    clock, cpu = time.monotonic(), children_cpu_s()
    src = fetch_and_probe(storage, source.bucket, source.key, work)
    frames = count_frames(src.path) if source_frames is None else source_frames
    merged = work / "merge"
    merged.mkdir()
    encoded = []
    for n, key in enumerate(encoded_keys):
        path = merged / f"enc_{n:05d}.mkv"
        storage.download(source.bucket, checked_key(key, "segment key"), path)
        encoded.append(path)
    dst = merged / f"output.{opts.format.ext}"
    merge(encoded, src, dst, opts, max_bytes=max_bytes, on_progress=on_progress)
    got = count_frames(dst)
    if got != frames:
        raise MediaFailed(f"the merged video has {got} frames, the source {frames}: a segment lost or gained frames")
    merge_s, merge_cpu_s = time.monotonic() - clock, children_cpu_s() - cpu
    clock = time.monotonic()
    info = storage.upload(source.bucket, output_key, dst, content_type=opts.format.content_type)
    duration = probe(dst).duration_s
    return {"output": {"bucket": source.bucket, "key": info.key, "size": info.size, "duration": round(duration, 3),
                       "frames": got},
            "source": {"duration": round(src.duration_s, 3), "frames": frames},
            "timings": {"merge_s": round(merge_s, 3), "merge_cpu_s": round(merge_cpu_s, 3),
                        "upload_s": round(time.monotonic() - clock, 3)}}


def remove_prefix(storage: Storage, bucket: str, prefix: str) -> None:
    """Drop the intermediate objects (pieces, encoded pieces) once the merged output is stored."""
    storage.remove(bucket, [o.key for o in storage.list(bucket, prefix + "/")])
