"""Event fields that name storage, the output keys derived from an invocation, and child invocation ids.

Output keys derive from the invocation id, never from user-chosen file names, so a retried attempt overwrites its
own earlier output instead of leaving a duplicate beside it.
"""
from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from taskservice.storage import InvalidKey, check_bucket, check_key, check_prefix
from workers.media import BadEvent

MAX_ID = 128


@dataclass(frozen=True)
class Source:
    bucket: str
    key: str
    output_dir: str


def parse_source(event: Any, *, output: bool = True) -> Source:
    """The `bucket`, `object` and `output_dir` fields, checked before anything touches storage."""
    if not isinstance(event, dict):
        raise BadEvent("the event must be a JSON object")
    try:
        bucket = check_bucket(event.get("bucket"))
        key = check_key(event.get("object"), what="object")
        output_dir = check_prefix(event.get("output_dir"), what="output_dir") if output else ""
    except InvalidKey as exc:
        raise BadEvent(str(exc)) from None
    return Source(bucket, key, output_dir)


def checked_key(value: Any, what: str) -> str:
    try:
        return check_key(value, what=what)
    except InvalidKey as exc:
        raise BadEvent(str(exc)) from None


def checked_bucket(value: Any) -> str:
    try:
        return check_bucket(value)
    except InvalidKey as exc:
        raise BadEvent(str(exc)) from None


def child_id(parent_id: str, suffix: str) -> str:
    """`<parent>-<suffix>`, shortened with a hash of the parent id when that would pass the 128-character limit, so
    a retried parent asks for the same child ids and re-adopts the children it already submitted."""
    candidate = f"{parent_id}-{suffix}"
    if len(candidate) <= MAX_ID:
        return candidate
    digest = hashlib.sha256(parent_id.encode()).hexdigest()[:12]
    return f"{parent_id[:MAX_ID - len(suffix) - 14]}-{digest}-{suffix}"


def output_key(output_dir: str, invocation_id: str, ext: str) -> str:
    return f"{output_dir}/{invocation_id}.{ext}"


def work_prefix(output_dir: str, invocation_id: str) -> str:
    """Where a parent keeps its intermediate objects (segments, parts); removed when it succeeds."""
    return f"{output_dir}/_work/{invocation_id}"
