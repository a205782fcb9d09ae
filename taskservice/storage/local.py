"""Object storage in a local directory: `<root>/<bucket>/<key>`, the embedded default.

Writes go to a temporary file beside the target and are renamed into place, so a reader never sees half an object
and a retried upload simply replaces the first one, as on S3.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from taskservice.storage import CHUNK, ObjectInfo, ObjectNotFound, Storage, StorageError, check_bucket, check_key


class LocalStorage(Storage):
    def __init__(self, root: Path) -> None:
        self.root = root.resolve()

    def _path(self, bucket: str, key: str) -> Path:
        path = (self.root / check_bucket(bucket) / check_key(key)).resolve()
        if not path.is_relative_to(self.root / bucket):  # belt and braces: check_key already refuses '..'
            raise ObjectNotFound(f"{bucket}/{key} is outside the storage root")
        return path

    def _existing(self, bucket: str, key: str) -> Path:
        path = self._path(bucket, key)
        if not path.is_file():
            raise ObjectNotFound(f"object {bucket}/{key} does not exist")
        return path

    def _write_atomically(self, target: Path, chunks: Iterator[bytes]) -> tuple[int, str]:
        """Write the chunks under a temporary name, then rename: (size, MD5 hex, S3's ETag of a single part)."""
        target.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=target.parent, prefix=".upload-")
        size = 0
        digest = hashlib.md5(usedforsecurity=False)
        try:
            with os.fdopen(fd, "wb") as out:
                for chunk in chunks:
                    out.write(chunk)
                    digest.update(chunk)
                    size += len(chunk)
            os.replace(tmp, target)
        except BaseException:
            Path(tmp).unlink(missing_ok=True)
            raise
        return size, digest.hexdigest()

    def ensure_bucket(self, bucket: str) -> None:
        (self.root / check_bucket(bucket)).mkdir(parents=True, exist_ok=True)

    def stat(self, bucket: str, key: str) -> ObjectInfo:
        return ObjectInfo(bucket, key, self._existing(bucket, key).stat().st_size)

    def download(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        source = self._existing(bucket, key)
        with open(source, "rb") as src, open(path, "wb") as dst:
            shutil.copyfileobj(src, dst, CHUNK)
        return ObjectInfo(bucket, key, path.stat().st_size)

    def upload(self, bucket: str, key: str, path: Path, *, content_type: str = "application/octet-stream"
               ) -> ObjectInfo:
        def chunks() -> Iterator[bytes]:
            with open(path, "rb") as src:
                while chunk := src.read(CHUNK):
                    yield chunk

        self.ensure_bucket(bucket)
        size, etag = self._write_atomically(self._path(bucket, key), chunks())
        return ObjectInfo(bucket, key, size, etag)

    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        path = self._existing(bucket, key)
        remaining = path.stat().st_size - offset if length is None else length
        with open(path, "rb") as src:
            src.seek(offset)
            while remaining > 0 and (chunk := src.read(min(CHUNK, remaining))):
                remaining -= len(chunk)
                yield chunk

    def copy_range(self, bucket: str, key: str, offset: int, length: int, dst_bucket: str, dst_key: str
                   ) -> ObjectInfo:
        self.ensure_bucket(dst_bucket)
        size, etag = self._write_atomically(self._path(dst_bucket, dst_key),
                                            self.read_range(bucket, key, offset, length))
        return ObjectInfo(dst_bucket, dst_key, size, etag)

    def write_stream(self, bucket: str, key: str, chunks: Iterator[bytes], length: int) -> ObjectInfo:
        self.ensure_bucket(bucket)
        size, etag = self._write_atomically(self._path(bucket, key), chunks)
        if size != length:
            self.remove(bucket, [key])
            raise StorageError(f"expected {length} bytes for {bucket}/{key}, the source gave {size}")
        return ObjectInfo(bucket, key, size, etag)

    def compose(self, bucket: str, key: str, sources: list[ObjectInfo]) -> ObjectInfo:
        def chunks() -> Iterator[bytes]:
            for source in sources:
                yield from self.read_range(source.bucket, source.key)

        self.ensure_bucket(bucket)
        size, etag = self._write_atomically(self._path(bucket, key), chunks())
        return ObjectInfo(bucket, key, size, etag)

    def remove(self, bucket: str, keys: list[str]) -> None:
        for key in keys:
            self._path(bucket, key).unlink(missing_ok=True)

    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]:
        base = self.root / check_bucket(bucket)
        if not base.is_dir():
            return []
        found = []
        for path in sorted(base.rglob("*")):
            key = path.relative_to(base).as_posix()
            if path.is_file() and key.startswith(prefix) and not path.name.startswith(".upload-"):
                found.append(ObjectInfo(bucket, key, path.stat().st_size))
        return found
