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
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from taskservice import create_app
from taskservice.cli.media_commands import MEDIA_FLOWS, media_flow_definition
from taskservice.cli.media_commands import MEDIA_FUNCTIONS as DEPLOYED
from taskservice.services import Services
from taskservice.storage import open_storage
from tests.integration.media.env import BUCKET, MediaEnv
from tests.support import Launcher

#: Test timeouts (a hung ffmpeg fails the test in minutes, not hours); handlers and names as deploy-media has them.
MEDIA_FUNCTIONS = {name: (handler, {"timeout_s": 300, "max_retries": min(retries, 1)})
                   for name, (handler, _, retries, _) in DEPLOYED.items()}


def _moto_server(port: int) -> Iterator[str]:
    """moto's S3 API served over HTTP in a thread; a missing moto fails the run."""
    try:
        from moto.server import ThreadedMotoServer
    except ImportError as exc:
        pytest.fail(f"moto[server] is not installed ({exc}); run `make install`", pytrace=False)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # one line per S3 request drowns a failure's report
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    yield f"s3://testing:testing@127.0.0.1:{port}?secure=false&region=us-east-1"
    server.stop()


@pytest.fixture(scope="session")
def s3_url(free_port: Callable[[], int]) -> Iterator[str]:
    yield from _moto_server(free_port())


@pytest.fixture(scope="session")
def other_s3_url(free_port: Callable[[], int]) -> Iterator[str]:
    """A second S3 endpoint (its own server, its own objects), configured on the worker as endpoint "other"."""
    yield from _moto_server(free_port())


@pytest.fixture(scope="session")
def ffmpeg_tools() -> None:
    for tool in ("ffmpeg", "ffprobe"):
        if shutil.which(tool) is None:
            pytest.fail(f"{tool} is not installed; run `make system-packages` (Debian package ffmpeg)", pytrace=False)


@pytest.fixture(scope="session")
def media(s3_url: str, other_s3_url: str, ffmpeg_tools: None, new_backend: Any, launch: Launcher, deploy: Any,
          deploy_flow: Any) -> Iterator[MediaEnv]:
    """Postgres + RabbitMQ ledger and broker, moto S3 storage, the media functions and flows deployed as deploy-media
    deploys them, a flow engine, and one worker with two slots: nothing waits in a slot any more, so two are enough
    for any number of fan-outs at once (the deadlock regression runs on exactly this worker)."""
    backend = new_backend("postgres", storage_url=s3_url, storage_endpoints=f"other={other_s3_url}")
    services = Services.build(backend.settings)
    client = create_app(backend.settings).test_client()
    for name, (handler, config) in MEDIA_FUNCTIONS.items():
        deploy(client, name, handler, **config)
    for name in MEDIA_FLOWS:
        deploy_flow(client, name, media_flow_definition(name))
    storage = open_storage(s3_url)
    storage.ensure_bucket(BUCKET)
    worker = launch.worker(backend, 2)
    engine = launch.engine(backend)
    try:
        yield MediaEnv(backend, services, client, storage, worker)
    finally:
        engine.stop()
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


@pytest.fixture(scope="session")
def ffmpeg_children(eventually: Any) -> Callable[..., list[int]]:
    """`ffmpeg_children(worker, timeout_s=30)`: pids of ffmpeg processes running under the worker, once one appears."""
    import psutil

    def children(worker: Any, timeout_s: float = 30) -> list[int]:
        return eventually(lambda: [p.pid for p in psutil.Process(worker.proc.pid).children(recursive=True)
                                   if _name(p) == "ffmpeg"], timeout_s=timeout_s,
                          what="an ffmpeg process under the worker")

    return children


def _name(proc: Any) -> str:
    try:
        return str(proc.name())
    except Exception:
        return ""


@pytest.fixture(scope="session")
def unique() -> Callable[[str], str]:
    """`unique(prefix)`: a name no other test uses, for invocation ids and object keys."""
    return lambda prefix: f"{prefix}_{os.urandom(4).hex()}"
