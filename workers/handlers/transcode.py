"""Transcode one object into one format (mp4, mov, flv, avi, webm, m3u8 for HLS, mp3 for audio only).

Event: {"bucket", "object", "output_dir", "dst_format"} and optionally "video_codec", "audio_codec", "resolution"
("1280x720"), "bitrate" ("2M"), "watermark_text", "preset" (x264 preset, default veryfast), "max_output_bytes".
Output keys derive from the invocation id (`<output_dir>/<invocation id>.<ext>`, or for HLS
`<output_dir>/<invocation id>/index.m3u8` plus its segments), so a retry overwrites its own earlier output.
The result lists every uploaded object with its size and, probed by ffprobe, its duration.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from workers.media.ffmpeg import Probe, probe, transcode
from workers.media.formats import EncodeOptions, parse_format, parse_options
from workers.media.keys import output_key, parse_source
from workers.media.work import fetch_and_probe, max_output_bytes, ranged, workdir


def handler(event: Any, context: Any) -> dict[str, Any]:
    source = parse_source(event)
    fmt = parse_format(event.get("dst_format"))
    opts = parse_options(event, fmt)
    limit = max_output_bytes(event)
    started = time.monotonic()
    with workdir() as work:
        context.progress(1, "downloading")
        src = fetch_and_probe(context.storage, source.bucket, source.key, work)
        context.logger.info("input %s/%s: %s", source.bucket, source.key, src.summary())
        out = work / "out"
        out.mkdir()
        dst = out / ("index.m3u8" if fmt.name == "m3u8" else f"output.{fmt.ext}")
        encode_started = time.monotonic()
        files = transcode(src, dst, opts, max_bytes=limit,
                          on_progress=ranged(context.progress, 5, 90, f"transcoding to {fmt.name}"))
        encode_s = time.monotonic() - encode_started
        context.progress(90, "uploading")
        outputs = upload_outputs(context, files, opts, source.bucket, source.output_dir, context.invocation_id)
    context.progress(100, "done")
    return {"outputs": outputs, "format": fmt.name, "source": {"bucket": source.bucket, "object": source.key,
                                                               "duration": round(src.duration_s, 3)},
            "timings": {"encode_s": round(encode_s, 3), "total_s": round(time.monotonic() - started, 3)}}


def upload_outputs(context: Any, files: list[Path], opts: EncodeOptions, bucket: str, output_dir: str,
                   invocation_id: str) -> list[dict[str, Any]]:
    """Upload what ffmpeg made; for HLS the segments first and the playlist last, so a reader never finds a
    playlist naming a segment that is not there yet."""
    storage = context.storage
    storage.ensure_bucket(bucket)
    described: list[dict[str, Any]] = []
    if opts.format.name == "m3u8":
        prefix = f"{output_dir}/{invocation_id}"
        playlist, *segments = files
        for path in segments:
            info = storage.upload(bucket, f"{prefix}/{path.name}", path, content_type="video/mp2t")
            described.append(_describe(info.key, info.size, path))
        info = storage.upload(bucket, f"{prefix}/index.m3u8", playlist, content_type=opts.format.content_type)
        described.insert(0, {"bucket": bucket, "key": info.key, "size": info.size,
                             "duration": round(sum(d["duration"] or 0 for d in described), 3)})
        for d in described:
            d["bucket"] = bucket
        return described
    (path,) = files
    info = storage.upload(bucket, output_key(output_dir, invocation_id, opts.format.ext), path,
                          content_type=opts.format.content_type)
    return [{"bucket": bucket, **_describe(info.key, info.size, path)}]


def _describe(key: str, size: int, path: Path) -> dict[str, Any]:
    probed: Probe = probe(path)
    return {"key": key, "size": size, "duration": round(probed.duration_s, 3)}
