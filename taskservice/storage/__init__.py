"""Object storage behind one small interface: MinIO or any S3 API (`s3://`), or a local directory (`file://`).

Handlers reach it through `context.storage`. Every method streams: objects move between storage and local files (or
between two objects) in bounded chunks, so a 10 GB video costs a worker no more memory than a 10 KB one.
"""
from __future__ import annotations

import hashlib
import re
from abc import ABC, abstractmethod
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from taskservice.errors import TaskServiceError

CHUNK = 1024 * 1024
MAX_KEY_BYTES = 1024
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")


class StorageError(TaskServiceError):
    """Object storage refused or failed an operation."""

    code = "StorageError"


class InvalidKey(StorageError):
    """A bucket name or object key that could escape its place or be read as an option; refused before any I/O."""

    code = "InvalidKey"
    http_status = 400


class ObjectNotFound(StorageError):
    code = "ObjectNotFound"
    http_status = 404


def check_bucket(bucket: object) -> str:
    if not isinstance(bucket, str) or not _BUCKET.fullmatch(bucket) or ".." in bucket:
        raise InvalidKey(f"invalid bucket name {bucket!r}: 3-63 characters of a-z, 0-9, '.' and '-'")
    return bucket


def check_key(key: object, *, what: str = "object key") -> str:
    """Refuse keys that are absolute, climb with `..`, have empty segments or control characters, or have a segment
    starting with `-` (which a careless command line would read as an option)."""
    if not isinstance(key, str) or not key:
        raise InvalidKey(f"{what} must be a non-empty string")
    if len(key.encode()) > MAX_KEY_BYTES:
        raise InvalidKey(f"{what} is longer than {MAX_KEY_BYTES} bytes")
    if _CONTROL.search(key):
        raise InvalidKey(f"{what} {key!r} contains control characters")
    if key.startswith("/") or "\\" in key:
        raise InvalidKey(f"{what} {key!r} must be relative and use '/' only")
    for segment in key.split("/"):
        if segment in ("", ".", ".."):
            raise InvalidKey(f"{what} {key!r} has an empty, '.' or '..' segment")
        if segment.startswith("-"):
            raise InvalidKey(f"{what} {key!r} has a segment starting with '-'")
    return key


def check_prefix(prefix: object, *, what: str = "output_dir") -> str:
    """A key prefix (a "directory"): the rules of a key, without the trailing slash."""
    if not isinstance(prefix, str):
        raise InvalidKey(f"{what} must be a string")
    return check_key(prefix.rstrip("/"), what=what)


@dataclass(frozen=True)
class ObjectInfo:
    bucket: str
    key: str
    size: int
    # When the backend says (S3's ETag, the local store's MD5): storage events de-duplicate by it. Not part of equality:
    # the same object read back through another call (or another backend) may not carry it.
    etag: str = field(default="", compare=False)


class Storage(ABC):
    """The operations the built-in functions need; each backend implements them with streamed I/O only."""

    @abstractmethod
    def ensure_bucket(self, bucket: str) -> None: ...

    @abstractmethod
    def stat(self, bucket: str, key: str) -> ObjectInfo:
        """Size of an object; ObjectNotFound when it does not exist."""

    @abstractmethod
    def download(self, bucket: str, key: str, path: Path) -> ObjectInfo:
        """Stream an object into a local file."""

    @abstractmethod
    def upload(self, bucket: str, key: str, path: Path, *, content_type: str = "application/octet-stream"
               ) -> ObjectInfo:
        """Stream a local file into an object (multipart for large files); replaces an existing object."""

    @abstractmethod
    def read_range(self, bucket: str, key: str, offset: int = 0, length: int | None = None) -> Iterator[bytes]:
        """Yield the bytes of an object (or of a byte range of it) in chunks of at most CHUNK."""

    @abstractmethod
    def copy_range(self, bucket: str, key: str, offset: int, length: int, dst_bucket: str, dst_key: str
                   ) -> ObjectInfo:
        """Stream a byte range of one object into a new object."""

    @abstractmethod
    def write_stream(self, bucket: str, key: str, chunks: Iterator[bytes], length: int) -> ObjectInfo:
        """Write `length` bytes arriving as chunks (from another storage) into a new object, never all in memory."""

    @abstractmethod
    def compose(self, bucket: str, key: str, sources: list[ObjectInfo]) -> ObjectInfo:
        """Concatenate source objects (in order) into one object, server side where the backend can."""

    @abstractmethod
    def remove(self, bucket: str, keys: list[str]) -> None:
        """Delete objects; missing ones are not an error."""

    @abstractmethod
    def list(self, bucket: str, prefix: str) -> list[ObjectInfo]: ...

    def sha256(self, bucket: str, key: str) -> str:
        digest = hashlib.sha256()
        for chunk in self.read_range(bucket, key):
            digest.update(chunk)
        return digest.hexdigest()


def copy_range_between(source: Storage, bucket: str, key: str, offset: int, length: int, target: Storage,
                       dst_bucket: str, dst_key: str) -> ObjectInfo:
    """Copy a byte range into an object on the same storage (the backend's own streamed copy) or on another one
    (another S3 endpoint: ranged reads streamed into the target's multipart upload)."""
    if source is target:
        return source.copy_range(bucket, key, offset, length, dst_bucket, dst_key)
    return target.write_stream(check_bucket(dst_bucket), check_key(dst_key),
                               source.read_range(bucket, key, offset, length), length)


_ENDPOINT_NAME = re.compile(r"^[a-z][a-z0-9_-]{0,31}$")


def parse_endpoints(text: str) -> dict[str, str]:
    """Named extra storages, `name=URL` separated by ';' (e.g. `backup=s3://KEY:SECRET@host:9000`). Events name an
    endpoint, never carry its credentials, so no secret ever lands in the ledger."""
    endpoints: dict[str, str] = {}
    for item in filter(None, (part.strip() for part in text.split(";"))):
        name, sep, url = item.partition("=")
        name, url = name.strip(), url.strip()
        if not sep or not _ENDPOINT_NAME.fullmatch(name):
            raise ValueError(f"storage endpoint {name or item!r} must be NAME=URL with NAME matching "
                             f"{_ENDPOINT_NAME.pattern}")
        if not url.startswith(("s3://", "file://")):
            raise ValueError(f"storage endpoint {name!r} needs an s3:// or file:// URL")
        if name in endpoints:
            raise ValueError(f"storage endpoint {name!r} is given twice")
        endpoints[name] = url
    return endpoints


def open_storage(url: str) -> Storage:
    """`file:///abs/dir` or `s3://ACCESS:SECRET@host:port[?secure=false&region=…]`."""
    if url.startswith("file://"):
        from taskservice.storage.local import LocalStorage

        return LocalStorage(Path(url[len("file://"):]))
    if url.startswith("s3://"):
        from taskservice.storage.s3 import S3Storage

        return S3Storage.from_url(url)
    raise StorageError(f"unsupported storage URL {url.split('://')[0]!r}://…: use file:// or s3://")
