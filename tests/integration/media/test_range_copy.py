"""Range-sharded copy of a 200 MB object through moto's S3 API: checksums equal, every worker process stays small."""
from __future__ import annotations

import hashlib
import json
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Any

import psutil

from taskservice.storage import open_storage

if TYPE_CHECKING:
    from tests.integration.media.env import MediaEnv

SIZE = 200 * 1024 * 1024
RSS_LIMIT = 150 * 1024 * 1024


class RssSampler(threading.Thread):
    """Samples the RSS of every process in the worker's tree (pool processes, forked attempts) every 50 ms."""

    def __init__(self, root_pid: int) -> None:
        super().__init__(daemon=True)
        self.root = psutil.Process(root_pid)
        self.peak: dict[int, tuple[int, str]] = {}
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(0.05):
            for proc in [self.root, *self.root.children(recursive=True)]:
                try:
                    rss = proc.memory_info().rss
                    name = " ".join(proc.cmdline()[:3])
                except psutil.Error:
                    continue
                if rss > self.peak.get(proc.pid, (0, ""))[0]:
                    self.peak[proc.pid] = (rss, name)


def _copied(media: MediaEnv, wait_for_status: Any, wait_for_execution: Any, iid: str, timeout_s: float
            ) -> dict[str, Any]:
    """`range-copy` starts the media-range-copy flow under its own id and ends at once; the copy is the flow's."""
    inv = wait_for_status(media.services, "range-copy", iid, {"Succeeded", "Failed", "Invalid"}, timeout_s=30)
    assert inv.status.value == "Succeeded", inv.error
    assert json.loads(inv.result)["executionName"] == iid
    return dict(wait_for_execution(media.client, "media-range-copy", iid, {"Succeeded", "Failed"},
                                   timeout_s=timeout_s))


def test_range_copy_of_200_mb_in_8_shards_verifies_and_stays_small(media: MediaEnv, tmp_path: Path,
                                                                   submit: Any, wait_for_status: Any,
                                                                   wait_for_execution: Any, unique: Any) -> None:
    source = tmp_path / "big.bin"
    digest = hashlib.sha256()
    with open(source, "wb") as fh:
        for _ in range(SIZE // (4 * 1024 * 1024)):
            chunk = os.urandom(4 * 1024 * 1024)
            digest.update(chunk)
            fh.write(chunk)
    key = f"big/{unique('src')}.bin"
    media.storage.upload(media.bucket, key, source)
    source.unlink()
    dst_bucket = "media-copies"
    sampler = RssSampler(media.worker.proc.pid)
    sampler.start()
    try:
        iid = submit(media.client, "range-copy", {"bucket": media.bucket, "object": key, "dst_bucket": dst_bucket,
                                                  "dst_object": "copies/big.bin", "shards": 8}, unique("copy"))
        done = _copied(media, wait_for_status, wait_for_execution, iid, 240)
    finally:
        sampler.done.set()
        sampler.join()
    assert done["status"] == "Succeeded", done["error"]
    result = done["output"]["copy"]
    assert result["shards"] == 8 and result["size"] == SIZE
    assert result["sha256"] == digest.hexdigest()
    assert media.storage.sha256(dst_bucket, "copies/big.bin") == digest.hexdigest()
    assert media.storage.list(dst_bucket, f"_work/{iid}/") == []  # parts removed after the compose
    shards = [s for s in done["steps"] if s["path"].startswith("copy_parts/")]
    assert len(shards) == 8 and all(s["status"] == "Succeeded" and s["attempts"] == 1 for s in shards)
    assert len(sampler.peak) >= 5, "the sampler saw the worker, its pool and the attempts"
    too_big = {pid: (rss // 2**20, name) for pid, (rss, name) in sampler.peak.items() if rss >= RSS_LIMIT}
    assert not too_big, f"worker processes over 150 MB RSS (MiB): {too_big}"


def test_range_copy_to_another_s3_endpoint(media: MediaEnv, other_s3_url: str, tmp_path: Path,
                                           submit: Any, wait_for_status: Any, wait_for_execution: Any,
                                           unique: Any) -> None:
    source = tmp_path / "medium.bin"
    source.write_bytes(os.urandom(22 * 1024 * 1024))
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    key = f"medium/{unique('src')}.bin"
    media.storage.upload(media.bucket, key, source)
    iid = submit(media.client, "range-copy", {"bucket": media.bucket, "object": key, "dst_endpoint": "other",
                                              "dst_bucket": "offsite", "dst_object": "copies/medium.bin",
                                              "shards": 4}, unique("remote"))
    done = _copied(media, wait_for_status, wait_for_execution, iid, 120)
    assert done["status"] == "Succeeded", done["error"]
    result = done["output"]["copy"]
    assert result["shards"] == 4 and result["sha256"] == digest
    other = open_storage(other_s3_url)
    assert other.sha256("offsite", "copies/medium.bin") == digest
    assert other.list("offsite", f"_work/{iid}/") == []
    assert media.storage.list(media.bucket, "copies/") == []  # nothing written on the service's own storage


def test_range_copy_to_an_unknown_endpoint_fails_its_plan_and_writes_nothing(
        media: MediaEnv, submit: Any, wait_for_status: Any, wait_for_execution: Any, unique: Any) -> None:
    iid = submit(media.client, "range-copy", {"bucket": media.bucket, "object": "inputs/none.bin",
                                              "dst_endpoint": "nowhere", "dst_bucket": "offsite",
                                              "dst_object": "x.bin"}, unique("nowhere"))
    done = _copied(media, wait_for_status, wait_for_execution, iid, 60)
    assert done["status"] == "Failed" and done["errorType"] == "BadEvent"
    assert "unknown storage endpoint 'nowhere'" in (done["error"] or "") and "other" in (done["error"] or "")
    assert [s["path"] for s in done["steps"] if s["type"] == "task"] == ["plan"]  # no retry of a bad event
