"""Media fixtures: moto's S3 server over HTTP (through our minio boundary), Debian ffmpeg, generated test clips, and
a worker on Postgres + RabbitMQ wired to that storage on a private queue.

These tests run on the production stack only (not once per backend): media work is CPU-bound, and the ledger paths
they exercise are the same ones the backend-parametrized suites already cover on both backends.
"""
from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient

from taskservice import create_app
from taskservice.services import Services
from taskservice.storage import Storage, open_storage
from tests.conftest import Backend, WorkerProcess, deploy, free_port, migrated, postgres_backend, wait_for_status

MEDIA_FUNCTIONS = {
    "transcode": ("workers.handlers.transcode:handler", {"timeout_s": 300, "max_retries": 1}),
    "transcode-fanout": ("workers.handlers.fanout:handler", {"timeout_s": 600, "max_retries": 0}),
    "transcode-split": ("workers.handlers.split_merge:handler", {"timeout_s": 600, "max_retries": 0}),
    "transcode-segment": ("workers.handlers.split_merge:segment_handler", {"timeout_s": 300, "max_retries": 2}),
    "range-copy": ("workers.handlers.range_copy:handler", {"timeout_s": 600, "max_retries": 0}),
    "range-copy-shard": ("workers.handlers.range_copy:shard_handler", {"timeout_s": 300, "max_retries": 2}),
}
BUCKET = "media"


def _moto_server() -> Iterator[str]:
    """moto's S3 API served over HTTP in a thread; a missing moto fails the run."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.fail(f"moto[server] is not installed ({exc}); run `make install`", pytrace=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request drowns a failure's report
    port = free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"s3://testing:testing@127.0.0.1:{port}?secure=false&region=us-east-1"
    server.stop()


@pytest.fixture(scope="session")
def s3_url() -> Iterator[str]:
    yield from _moto_server()


@pytest.fixture(scope="session")
def other_s3_url() -> Iterator[str]:
    """A second S3 endpoint (its own server, its own objects), configured on the worker as endpoint "other"."""
    yield from _moto_server()


@pytest.fixture(scope="session")
def ffmpeg_tools() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run `make system-packages` (Debian package ffmpeg)", pytrace=False)


@dataclass
class MediaEnv:
    backend: Backend
    services: Services
    client: FlaskClient
    storage: Storage
    worker: WorkerProcess

    def submit(self, function: str, payload: Any, invocation_id: str) -> str:
        response = self.client.post(f"/v1/functions/{function}/invocations", json=payload,
                                    headers={"X-Invocation-Id": invocation_id})
        assert response.status_code == 202, response.get_json()
        return invocation_id

    def wait(self, function: str, invocation_id: str, statuses: set[str], timeout_s: float = 90) -> Any:
        return wait_for_status(self.services, function, invocation_id, statuses, timeout_s=timeout_s)

    def fetch(self, key: str, path: Path) -> Path:
        self.storage.download(BUCKET, key, path)
        return path


@pytest.fixture(scope="session")
def media(s3_url: str, other_s3_url: str, ffmpeg_tools: None, tmp_path_factory: pytest.TempPathFactory
          ) -> Iterator[MediaEnv]:
    """Postgres + RabbitMQ ledger and broker, moto S3 storage, the media functions deployed, one worker with four
    slots (a waiting parent holds one, so children need the others)."""
    tmp = tmp_path_factory.mktemp("media")
    base = postgres_backend(tmp)
    base.settings = base.settings.merged(storage_url=s3_url, storage_endpoints=f"other={other_s3_url}")
    for backend in migrated(base):
        services = Services.build(backend.settings)
        client = create_app(backend.settings).test_client()
        for name, (handler, config) in MEDIA_FUNCTIONS.items():
            deploy(client, name, handler, **config)
        storage = open_storage(s3_url)
        storage.ensure_bucket(BUCKET)
        worker = WorkerProcess(backend, 4, tmp / "worker.log")
        try:
            yield MediaEnv(backend, services, client, storage, worker)
        finally:
            worker.stop()
            services.close()


def make_clip(path: Path, *, seconds: int, size: str, rate: int, gop: int) -> Path:
    """A test clip from ffmpeg's lavfi sources: testsrc2 video and a sine tone, H.264 + AAC in MP4."""
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={size}:rate={rate}",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=22050", "-t", str(seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", str(gop), "-pix_fmt", "yuv420p",
                    "-c:a", "aac", "-ac", "1", "-b:a", "32k", str(path)], check=True)
    return path


@pytest.fixture(scope="session")
def short_clip(media: MediaEnv, tmp_path_factory: pytest.TempPathFactory) -> str:
    """3 s of 320x240 at 15 fps, uploaded once per session; returns its key."""
    path = make_clip(tmp_path_factory.mktemp("clips") / "short.mp4", seconds=3, size="320x240", rate=15, gop=15)
    media.storage.upload(BUCKET, "inputs/short.mp4", path)
    return "inputs/short.mp4"


@pytest.fixture(scope="session")
def long_clip(media: MediaEnv, tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    """3 minutes of 160x120 at 10 fps with a keyframe every 5 s; returns its key and local copy."""
    path = make_clip(tmp_path_factory.mktemp("clips") / "long.mp4", seconds=180, size="160x120", rate=10, gop=50)
    media.storage.upload(BUCKET, "inputs/long.mp4", path)
    return "inputs/long.mp4", path


def ffmpeg_children(worker: WorkerProcess, timeout_s: float = 30) -> list[int]:
    """Pids of ffmpeg processes running under the worker, waiting until one appears."""
    import psutil

    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        pids = [p.pid for p in psutil.Process(worker.proc.pid).children(recursive=True)
                if _name(p) == "ffmpeg"]
        if pids:
            return pids
        time.sleep(0.05)
    raise AssertionError("no ffmpeg process appeared under the worker")


def _name(proc: Any) -> str:
    try:
        return str(proc.name())
    except Exception:
        return ""


def unique(prefix: str) -> str:
    return f"{prefix}_{os.urandom(4).hex()}"
