"""Range-sharded copy of a large object to another bucket, or to another S3 endpoint: N children each copy one byte
range, then compose.

Event: {"bucket", "object", "dst_bucket", "dst_object"} plus optional "shards" (default 8, at most 64),
"dst_endpoint" (the name of a storage in TASKSERVICE_STORAGE_ENDPOINTS; default: the service's own storage) and
"shard_function" (default "range-copy-shard", deployed with `shard_handler`).

Each child streams its range (a ranged GET) into a part object (a multipart upload, a few MiB in memory at a time);
the parent composes the parts server side (S3 UploadPartCopy; the local backend concatenates), then verifies the
copy with SHA-256 streamed over source and destination, and removes the parts. Parts are at least 5 MiB (the S3
minimum for all but the last part of a multipart upload), so a small object gets fewer shards than asked for.
"""
from __future__ import annotations

import time
from typing import Any

from taskservice.storage import ObjectInfo, ObjectNotFound, Storage, StorageError, copy_range_between
from workers.media import BadEvent
from workers.media.family import function_name, submit_or_adopt, wait_all
from workers.media.keys import checked_bucket, checked_key, child_id, parse_source

MIN_PART = 5 * 1024 * 1024
MAX_SHARDS = 64


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


def handler(event: Any, context: Any) -> dict[str, Any]:
    source = parse_source(event, output=False)
    dst_bucket = checked_bucket(event.get("dst_bucket"))
    dst_key = checked_key(event.get("dst_object"), "dst_object")
    shards = event.get("shards", 8)
    if not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise BadEvent(f"shards must be an integer in 1..{MAX_SHARDS}")
    storage, iid = context.storage, context.invocation_id
    target = target_storage(event, context)
    if target is storage and (dst_bucket, dst_key) == (source.bucket, source.key):
        raise BadEvent("the destination is the source object")
    function = function_name(event, "shard_function", "range-copy-shard")
    try:
        size = storage.stat(source.bucket, source.key).size
    except ObjectNotFound as exc:
        raise BadEvent(str(exc)) from None
    target.ensure_bucket(dst_bucket)
    plan = shard_plan(size, shards)
    parts = [ObjectInfo(dst_bucket, f"_work/{iid}/part_{n:05d}", length) for n, (_, length) in enumerate(plan)]
    children = [submit_or_adopt(context, function, {"bucket": source.bucket, "object": source.key, "offset": offset,
                                                    "length": length, "dst_bucket": dst_bucket, "part_key": part.key,
                                                    "dst_endpoint": event.get("dst_endpoint")},
                                child_id(iid, f"part{n:03d}"))
                for n, ((offset, length), part) in enumerate(zip(plan, parts, strict=True))]
    context.logger.info("copying %d bytes in %d shard(s)", size, len(plan))
    clock = time.monotonic()
    wait_all(context, children, start=1, end=80, what="shards")
    shards_s = time.monotonic() - clock
    context.progress(80, "composing")
    composed = target.compose(dst_bucket, dst_key, parts)
    context.progress(85, "verifying checksums")
    clock = time.monotonic()
    src_sha, dst_sha = storage.sha256(source.bucket, source.key), target.sha256(dst_bucket, dst_key)
    verify_s = time.monotonic() - clock
    if composed.size != size or src_sha != dst_sha:
        raise ChecksumMismatch(f"copy differs from source: {composed.size} bytes sha256 {dst_sha} vs {size} bytes "
                               f"sha256 {src_sha}")
    target.remove(dst_bucket, [p.key for p in parts])
    context.progress(100, "copied and verified")
    return {"bucket": dst_bucket, "object": dst_key, "size": size, "sha256": dst_sha, "shards": len(plan),
            "timings": {"shards_s": round(shards_s, 3), "verify_s": round(verify_s, 3)}}


def shard_handler(event: Any, context: Any) -> dict[str, Any]:
    """Copy one byte range into one part object, streamed."""
    source = parse_source(event, output=False)
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
