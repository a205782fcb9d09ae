"""taskservice: a self-hosted stateful asynchronous task service with destinations."""
from __future__ import annotations

from typing import Any

from flask import Flask

from taskservice.config import Settings

__version__ = "0.1.0"


def create_app(test_config: dict[str, Any] | Settings | None = None) -> Flask:
    """Flask app factory. The environment (TASKSERVICE_*) is read here and nowhere else on the API side."""
    from taskservice.api import register_api
    from taskservice.services import Services

    if isinstance(test_config, Settings):
        settings = test_config
    else:
        settings = Settings.from_env(**(test_config or {}))
    app = Flask(__name__, static_folder=None)
    app.json.sort_keys = False  # type: ignore[attr-defined]
    services = Services.build(settings)
    app.extensions["taskservice"] = services
    register_api(app)
    return app
