"""Storage events from taskservice's own storage boundary: every object written or removed through a
`NotifyingStorage` is reported to a callback as an S3-style event, so storage triggers fire for the embedded
`file://` default (no MinIO at all) exactly as they do for MinIO's bucket notifications.

The event's `version` (the object's ETag when the backend gives one) goes into the invocation id, so the same
upload reported both here and by MinIO's webhook is one invocation.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path

from taskservice.storage import ObjectInfo, Storage

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ObjectEvent:
    """One object created or removed, in S3's vocabulary (`s3:ObjectCreated:Put`, `s3:ObjectRemoved:Delete`)."""

    event_name: str
    bucket: str
    key: str
    size: int
    etag: str
    sequencer: str
    time: datetime

    @property
    def version(self) -> str:
        """What tells two writes of one key apart: the ETag, else the sequencer."""
        return self.etag or self.sequencer


EventSink = Callable[[list[ObjectEvent]], None]


def _sequencer() -> str:
    return f"{time.time_ns():016X}"


class NotifyingStorage(Storage):
    """A storage that tells `sink` of every object it writes or removes, after the write succeeded. A sink that
    fails is logged, not raised: the object is written either way, and the caller's work must not fail for it."""

    def __init__(self, inner: Storage, sink: EventSink) -> None:
        self.inner = inner
        self.sink = sink

    def _created(self, info: ObjectInfo, name: str = "s3:ObjectCreated:Put") -> ObjectInfo:
        self._emit([ObjectEvent(name, info.bucket, info.key, info.size, info.etag, _sequencer(),
                                datetime.now(timezone.utc))])
        return info

    def _emit(self, events: list[ObjectEvent]) -> None:
        try:
            self.sink(events)
        except Exception:
            log.exception("storage events for %s could not be delivered", [e.key for e in events])

    def ensure_bucket(self, bucket: str) -> None:
        self.inner.ensure_bucket(bucket)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        return self.inner.stat(bucket, key)

    def download(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        return self.inner.download(bucket, key, path)

    def upload(self, bucket: str, key: str, path: Path, *, content_type: str = "application/octet-stream"
               ) -> ObjectInfo:
        return self._created(self.inner.upload(bucket, key, path, content_type=content_type))

    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        return self.inner.read_range(bucket, key, offset, length)

    def copy_range(self, bucket: str, key: str, offset: int, length: int, dst_bucket: str, dst_key: str
                   ) -> ObjectInfo:
        return self._created(self.inner.copy_range(bucket, key, offset, length, dst_bucket, dst_key),
                             "s3:ObjectCreated:Copy")

    def write_stream(self, bucket: str, key: str, chunks: Iterator[bytes], length: int) -> ObjectInfo:
        return self._created(self.inner.write_stream(bucket, key, chunks, length))

    def compose(self, bucket: str, key: str, sources: list[ObjectInfo]) -> ObjectInfo:
        return self._created(self.inner.compose(bucket, key, sources), "s3:ObjectCreated:CompleteMultipartUpload")

    def remove(self, bucket: str, keys: list[str]) -> None:
        self.inner.remove(bucket, keys)
        now = datetime.now(timezone.utc)
        self._emit([ObjectEvent("s3:ObjectRemoved:Delete", bucket, key, 0, "", _sequencer(), now) for key in keys])

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        return self.inner.list(bucket, prefix)
