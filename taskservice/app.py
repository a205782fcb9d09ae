"""The Flask app factory: API and console over one process's services."""
from __future__ import annotations

import contextlib
import os
import secrets
from pathlib import Path
from typing import Any

from flask import Flask

from taskservice.config import Settings


def create_app(test_config: dict[str, Any] | Settings | None = None) -> Flask:
    """Flask app factory. The environment (TASKSERVICE_*) is read here and nowhere else on the API side."""
    from taskservice.api import register_api
    from taskservice.console import register_console
    from taskservice.services import Services

    if isinstance(test_config, Settings):
        settings = test_config
    else:
        settings = Settings.from_env(**(test_config or {}))
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    app.secret_key = settings.secret_key or _generated_secret(settings.data_dir)
    app.config.update(SESSION_COOKIE_HTTPONLY=True, SESSION_COOKIE_SAMESITE="Lax")
    services = Services.build(settings)
    app.extensions["taskservice"] = services
    register_api(app)
    register_console(app)
    return app


def _generated_secret(data_dir: Path) -> str:
    """A session-signing key made once and kept beside the embedded data (mode 0600), so sessions survive restarts
    on one machine. Deployments with several API machines set TASKSERVICE_SECRET_KEY instead."""
    path = data_dir / "secret_key"
    if not path.exists():
        data_dir.mkdir(parents=True, exist_ok=True)
        with contextlib.suppress(FileExistsError):  # another process made it first
            with open(path, "x", encoding="ascii", opener=lambda p, f: os.open(p, f, 0o600)) as out:
                out.write(secrets.token_urlsafe(48))
    return path.read_text(encoding="ascii").strip()
