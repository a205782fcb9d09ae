"""The media test environment the `media` fixture hands out (tests/integration/media/conftest.py)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from flask.testing import FlaskClient

from taskservice.services import Services
from taskservice.storage import Storage
from tests.support import Backend, WorkerProcess

BUCKET = "media"


@dataclass
class MediaEnv:
    backend: Backend
    services: Services
    client: FlaskClient
    storage: Storage
    worker: WorkerProcess
    bucket: str = BUCKET

    def fetch(self, key: str, path: Path) -> Path:
        self.storage.download(self.bucket, key, path)
        return path
