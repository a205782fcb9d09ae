"""Named storage endpoints (TASKSERVICE_STORAGE_ENDPOINTS) and copies between two storages."""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from taskservice.config import Settings
from taskservice.errors import ConfigError
from taskservice.storage import StorageError, copy_range_between, open_storage, parse_endpoints


def test_endpoints_parse_names_and_urls() -> None:
    assert parse_endpoints("") == {}
    assert parse_endpoints(" backup=s3://k:s@host:9000?secure=false ; local=file:///srv/objects ;") == {
        "backup": "s3://k:s@host:9000?secure=false", "local": "file:///srv/objects"}


@pytest.mark.parametrize("text, message", [
    ("backup", "NAME=URL"), ("Backup=s3://k:s@h", "NAME=URL"), ("a=http://h", "s3:// or file://"),
    ("a=s3://k:s@h;a=file:///x", "given twice"), ("=s3://k:s@h", "NAME=URL"),
])
def test_bad_endpoint_lists_are_refused_when_settings_load(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        parse_endpoints(text)
    with pytest.raises(ConfigError, match="STORAGE_ENDPOINTS"):
        Settings.from_env({"TASKSERVICE_STORAGE_ENDPOINTS": text})


def test_a_range_copied_between_two_storages_streams_exactly_those_bytes(tmp_path: Path) -> None:
    here, there = open_storage(f"file://{tmp_path / 'a'}"), open_storage(f"file://{tmp_path / 'b'}")
    data = os.urandom(3 * 1024 * 1024 + 17)
    (tmp_path / "src.bin").write_bytes(data)
    here.ensure_bucket("src")
    here.upload("src", "big.bin", tmp_path / "src.bin")
    info = copy_range_between(here, "src", "big.bin", 1000, 2 * 1024 * 1024, there, "dst", "part/0")
    assert info.size == 2 * 1024 * 1024
    assert b"".join(there.read_range("dst", "part/0")) == data[1000:1000 + 2 * 1024 * 1024]
    assert not (tmp_path / "a" / "dst").exists()  # nothing written on the source storage
    with pytest.raises(StorageError, match="expected"):
        there.write_stream("dst", "short", iter([b"abc"]), 10)
    assert there.list("dst", "short") == []
