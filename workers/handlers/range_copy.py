"""Range-sharded copy of a large object to another bucket, or to another S3 endpoint, as the steps of the
`media-range-copy` flow: plan the byte ranges, copy each range in a foreach, compose and verify.

Flow input: {"bucket", "object", "dst_bucket", "dst_object"} plus optional "shards" (default 8, at most 64) and
"dst_endpoint" (the name of a storage in TASKSERVICE_STORAGE_ENDPOINTS; default: the service's own storage). Steps:
- `range-copy-plan` (`plan_handler`): validate, stat the source, one {"offset", "length", "part_key"} per shard;
- `range-copy-shard` (`shard_handler`): stream one range (a ranged GET) into a part object (a multipart upload, a
  few MiB in memory at a time), each shard retried on its own;
- `range-copy-compose` (`compose_handler`): compose the parts server side (S3 UploadPartCopy; the local backend
  concatenates), verify the copy with SHA-256 streamed over source and destination, remove the parts.
Parts are at least 5 MiB (the S3 minimum for all but the last part of a multipart upload), so a small object gets
fewer shards than asked for. `range-copy` (`handler`), the old parent that waited in a slot, starts the flow.
"""
from __future__ import annotations

import time
from typing import Any

from taskservice.storage import ObjectInfo, ObjectNotFound, Storage, StorageError, copy_range_between
from workers.media import BadEvent
from workers.media.flow_start import flow_name, start_flow
from workers.media.keys import Source, checked_bucket, checked_key, parse_source

MIN_PART = 5 * 1024 * 1024
MAX_SHARDS = 64
FLOW = "media-range-copy"


class ChecksumMismatch(Exception):
    """The composed copy does not hash like its source (retryable: parts are rewritten on the next attempt)."""


def shard_plan(size: int, shards: int) -> list[tuple[int, int]]:
    """(offset, length) per shard: equal ranges of at least MIN_PART bytes, the last one taking the remainder."""
    count = max(1, min(shards, size // MIN_PART))
    step = size // count
    return [(n * step, step if n < count - 1 else size - n * step) for n in range(count)]


def target_storage(event: Any, context: Any) -> Storage:
    """Where the copy goes: the storage named by dst_endpoint, or the service's own."""
    endpoint = event.get("dst_endpoint")
    if endpoint is None:
        return context.storage
    if not isinstance(endpoint, str):
        raise BadEvent("dst_endpoint must be the name of a configured storage endpoint")
    try:
        return context.storage_at(endpoint)
    except StorageError as exc:
        raise BadEvent(exc.message) from None


def _copy_request(event: Any, context: Any) -> tuple[Source, str, str, Storage]:
    """Source, destination bucket and key, and the destination storage, refused when the copy is onto itself."""
    source = parse_source(event, output=False)
    dst_bucket = checked_bucket(event.get("dst_bucket"))
    dst_key = checked_key(event.get("dst_object"), "dst_object")
    target = target_storage(event, context)
    if target is context.storage and (dst_bucket, dst_key) == (source.bucket, source.key):
        raise BadEvent("the destination is the source object")
    return source, dst_bucket, dst_key, target


def _part_prefix(event: dict[str, Any], context: Any) -> str:
    """Parts live under `_work/<execution>/` in the destination bucket (the execution is mapped in by the flow)."""
    return f"_work/{checked_key(event.get('execution') or context.invocation_id, 'execution')}"


def plan_handler(event: Any, context: Any) -> dict[str, Any]:
    source, dst_bucket, _, target = _copy_request(event, context)
    shards = event.get("shards", 8)
    if not isinstance(shards, int) or isinstance(shards, bool) or not 1 <= shards <= MAX_SHARDS:
        raise BadEvent(f"shards must be an integer in 1..{MAX_SHARDS}")
    try:
        size = context.storage.stat(source.bucket, source.key).size
    except ObjectNotFound as exc:
        raise BadEvent(str(exc)) from None
    target.ensure_bucket(dst_bucket)
    prefix = _part_prefix(event, context)
    parts = [{"index": n, "offset": offset, "length": length, "part_key": f"{prefix}/part_{n:05d}"}
             for n, (offset, length) in enumerate(shard_plan(size, shards))]
    context.logger.info("copying %d bytes in %d shard(s)", size, len(parts))
    return {"size": size, "parts": parts}


def compose_handler(event: Any, context: Any) -> dict[str, Any]:
    """Event: the flow's state after the foreach: `size` and `parts` from the plan (every shard has copied)."""
    source, dst_bucket, dst_key, target = _copy_request(event, context)
    size, parts = event.get("size"), event.get("parts")
    prefix = _part_prefix(event, context) + "/"
    if not isinstance(size, int) or not isinstance(parts, list) or not parts:
        raise BadEvent("size and parts must be the plan's (range-copy-plan's output)")
    try:
        infos = [ObjectInfo(dst_bucket, p["part_key"], p["length"]) for p in sorted(parts, key=lambda p: p["index"])]
    except (KeyError, TypeError):
        raise BadEvent("every part needs index, part_key and length") from None
    if any(not i.key.startswith(prefix) for i in infos):
        raise BadEvent(f"part keys must lie under {prefix}")  # the parts are removed afterwards: nothing else may be
    context.progress(5, "composing")
    composed = target.compose(dst_bucket, dst_key, infos)
    context.progress(20, "verifying checksums")
    clock = time.monotonic()
    src_sha, dst_sha = context.storage.sha256(source.bucket, source.key), target.sha256(dst_bucket, dst_key)
    verify_s = time.monotonic() - clock
    if composed.size != size or src_sha != dst_sha:
        raise ChecksumMismatch(f"copy differs from source: {composed.size} bytes sha256 {dst_sha} vs {size} bytes "
                               f"sha256 {src_sha}")
    target.remove(dst_bucket, [p.key for p in infos])
    context.progress(100, "copied and verified")
    return {"bucket": dst_bucket, "object": dst_key, "size": size, "sha256": dst_sha, "shards": len(infos),
            "timings": {"verify_s": round(verify_s, 3)}}


def handler(event: Any, context: Any) -> dict[str, Any]:
    """`range-copy`: starts `media-range-copy` with this event and returns at once (no slot held)."""
    if not isinstance(event, dict):
        raise BadEvent("the event must be a JSON object")
    return start_flow(context, flow_name(context, "range-copy", FLOW), event, context.invocation_id)


def shard_handler(event: Any, context: Any) -> dict[str, Any]:
    """Copy one byte range into one part object, streamed. In the flow the range is the foreach item `part`
    ({"offset", "length", "part_key"}); called directly, those fields are top-level."""
    source = parse_source(event, output=False)
    item = event.get("part")
    if item is not None:
        if not isinstance(item, dict):
            raise BadEvent("part must be an object with offset, length and part_key")
        event = {**event, **{k: item.get(k) for k in ("offset", "length", "part_key")}}
    dst_bucket = checked_bucket(event.get("dst_bucket"))
    part_key = checked_key(event.get("part_key"), "part_key")
    offset, length = event.get("offset"), event.get("length")
    if not isinstance(offset, int) or not isinstance(length, int) or offset < 0 or length < 0:
        raise BadEvent("offset and length must be non-negative integers")
    target = target_storage(event, context)
    info = copy_range_between(context.storage, source.bucket, source.key, offset, length, target, dst_bucket,
                              part_key)
    written = target.stat(dst_bucket, part_key).size
    if written != length:
        raise RuntimeError(f"part {part_key} has {written} bytes, expected {length}")
    return {"key": info.key, "size": written, "offset": offset}
