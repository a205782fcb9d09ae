"""MinIO or any S3 API, through the `minio` client: the only module that imports it (design §3, principle 6).

Downloads and uploads stream through local files (`fget_object`/`fput_object`, multipart above 5 MiB); a ranged copy
streams the source response straight into the destination's multipart upload, a few MiB in memory at a time;
`compose` runs server side (UploadPartCopy), so merged bytes never pass through the worker.
"""
from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, cast
from urllib.parse import parse_qs, unquote, urlsplit

from minio import Minio
from minio.commonconfig import ComposeSource
from minio.deleteobjects import DeleteObject
from minio.error import S3Error

from taskservice.storage import (
    CHUNK,
    ObjectInfo,
    ObjectNotFound,
    Storage,
    StorageError,
    check_bucket,
    check_key,
)

PART_SIZE = 8 * 1024 * 1024
_MISSING = {"NoSuchKey", "NoSuchBucket", "NoSuchObject"}


def _translated(exc: S3Error, what: str) -> StorageError:
    if exc.code in _MISSING:
        return ObjectNotFound(f"{what} does not exist ({exc.code})")
    return StorageError(f"{what}: {exc.code}: {exc.message}")


class _ChunkReader(io.RawIOBase):
    """A file-like view of an iterator of chunks: put_object reads it one part at a time."""

    def __init__(self, chunks: Iterator[bytes]) -> None:
        self._chunks = chunks
        self._buffer = bytearray()

    def readable(self) -> bool:
        return True

    def read(self, size: int = -1) -> bytes:  # type: ignore[override]
        while size < 0 or len(self._buffer) < size:
            chunk = next(self._chunks, None)
            if chunk is None:
                break
            self._buffer += chunk
        cut = len(self._buffer) if size < 0 else min(size, len(self._buffer))
        data = bytes(self._buffer[:cut])
        del self._buffer[:cut]
        return data


class S3Storage(Storage):
    def __init__(self, client: Minio) -> None:
        self.client = client

    @classmethod
    def from_url(cls, url: str) -> S3Storage:
        """`s3://ACCESS:SECRET@host:port[?secure=false&region=us-east-1]`; secure defaults to true."""
        parts = urlsplit(url)
        if not parts.hostname or parts.username is None or parts.password is None:
            raise StorageError("storage URL must look like s3://ACCESS:SECRET@host:port[?secure=false]")
        query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
        secure = query.get("secure", "true").lower() not in ("false", "0", "no")
        endpoint = parts.hostname + (f":{parts.port}" if parts.port else "")
        client = Minio(endpoint, access_key=unquote(parts.username), secret_key=unquote(parts.password),
                       secure=secure, region=query.get("region") or None)
        return cls(client)

    def ensure_bucket(self, bucket: str) -> None:
        try:
            if not self.client.bucket_exists(check_bucket(bucket)):
                self.client.make_bucket(bucket)
        except S3Error as exc:
            if exc.code not in ("BucketAlreadyOwnedByYou", "BucketAlreadyExists"):
                raise _translated(exc, f"bucket {bucket}") from exc

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        try:
            stat = self.client.stat_object(check_bucket(bucket), check_key(key))
        except S3Error as exc:
            raise _translated(exc, f"object {bucket}/{key}") from exc
        return ObjectInfo(bucket, key, int(stat.size or 0), (stat.etag or "").strip('"'))

    def download(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        try:
            self.client.fget_object(check_bucket(bucket), check_key(key), str(path))
        except S3Error as exc:
            raise _translated(exc, f"object {bucket}/{key}") from exc
        return ObjectInfo(bucket, key, path.stat().st_size)

    def upload(self, bucket: str, key: str, path: Path, *, content_type: str = "application/octet-stream"
               ) -> ObjectInfo:
        try:
            result = self.client.fput_object(check_bucket(bucket), check_key(key), str(path),
                                             content_type=content_type, part_size=PART_SIZE)
        except S3Error as exc:
            raise _translated(exc, f"upload to {bucket}/{key}") from exc
        return ObjectInfo(bucket, key, path.stat().st_size, (result.etag or "").strip('"'))

    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        try:
            response = self.client.get_object(check_bucket(bucket), check_key(key), offset=offset,
                                              length=length or 0)
        except S3Error as exc:
            raise _translated(exc, f"object {bucket}/{key}") from exc
        try:
            yield from response.stream(CHUNK)
        finally:
            response.close()
            response.release_conn()

    def copy_range(self, bucket: str, key: str, offset: int, length: int, dst_bucket: str, dst_key: str
                   ) -> ObjectInfo:
        check_bucket(dst_bucket), check_key(dst_key)
        try:
            response = self.client.get_object(check_bucket(bucket), check_key(key), offset=offset, length=length)
        except S3Error as exc:
            raise _translated(exc, f"object {bucket}/{key}") from exc
        try:
            # put_object reads `part_size` bytes at a time from the response: bounded memory, multipart upload.
            self.client.put_object(dst_bucket, dst_key, cast(BinaryIO, response), length, part_size=PART_SIZE,
                                   num_parallel_uploads=1)
        except S3Error as exc:
            raise _translated(exc, f"upload to {dst_bucket}/{dst_key}") from exc
        finally:
            response.close()
            response.release_conn()
        return ObjectInfo(dst_bucket, dst_key, length)

    def write_stream(self, bucket: str, key: str, chunks: Iterator[bytes], length: int) -> ObjectInfo:
        try:
            result = self.client.put_object(check_bucket(bucket), check_key(key), cast(BinaryIO, _ChunkReader(chunks)),
                                            length, part_size=PART_SIZE, num_parallel_uploads=1)
        except S3Error as exc:
            raise _translated(exc, f"upload to {bucket}/{key}") from exc
        return ObjectInfo(bucket, key, length, (result.etag or "").strip('"'))

    def compose(self, bucket: str, key: str, sources: list[ObjectInfo]) -> ObjectInfo:
        try:
            self.client.compose_object(check_bucket(bucket), check_key(key),
                                       [ComposeSource(s.bucket, s.key) for s in sources])
        except S3Error as exc:
            raise _translated(exc, f"compose into {bucket}/{key}") from exc
        return self.stat(bucket, key)

    def remove(self, bucket: str, keys: list[str]) -> None:
        errors = list(self.client.remove_objects(check_bucket(bucket), [DeleteObject(check_key(k)) for k in keys]))
        if errors:
            raise StorageError(f"could not remove {len(errors)} object(s) from {bucket}: {errors[0]}")

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        try:
            return [ObjectInfo(bucket, o.object_name or "", int(o.size or 0))
                    for o in self.client.list_objects(check_bucket(bucket), prefix=prefix, recursive=True)]
        except S3Error as exc:
            raise _translated(exc, f"bucket {bucket}") from exc

