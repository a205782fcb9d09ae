"""The local-directory storage backend (the embedded default) behind the same interface as S3."""
from __future__ import annotations

import hashlib
import os
from pathlib import Path

import pytest

from taskservice.storage import InvalidKey, ObjectInfo, ObjectNotFound, StorageError, open_storage


def test_upload_download_range_compose_list_remove(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path / 'objects'}")
    data = os.urandom(3 * 1024 * 1024 + 11)
    (tmp_path / "src").write_bytes(data)
    assert storage.upload("media", "in/a.bin", tmp_path / "src").size == len(data)
    assert storage.stat("media", "in/a.bin").size == len(data)
    storage.download("media", "in/a.bin", tmp_path / "back")
    assert (tmp_path / "back").read_bytes() == data
    assert b"".join(storage.read_range("media", "in/a.bin", 100, 2_000_000)) == data[100:2_000_100]
    halves = [storage.copy_range("media", "in/a.bin", 0, 1_000_000, "copies", "p/0"),
              storage.copy_range("media", "in/a.bin", 1_000_000, len(data) - 1_000_000, "copies", "p/1")]
    assert storage.compose("copies", "whole.bin", halves) == ObjectInfo("copies", "whole.bin", len(data))
    assert storage.sha256("copies", "whole.bin") == hashlib.sha256(data).hexdigest()
    assert [o.key for o in storage.list("copies", "p/")] == ["p/0", "p/1"]
    storage.remove("copies", ["p/0", "p/1", "p/missing"])
    assert storage.list("copies", "p/") == []


def test_missing_objects_and_escaping_keys(tmp_path: Path) -> None:
    storage = open_storage(f"file://{tmp_path}")
    with pytest.raises(ObjectNotFound):
        storage.stat("media", "nothing")
    for key in ("../outside", "/abs", "a/../../b"):
        with pytest.raises(InvalidKey):
            storage.download("media", key, tmp_path / "x")
    with pytest.raises(StorageError, match="unsupported storage URL"):
        open_storage("ftp://host/x")
