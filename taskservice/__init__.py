"""taskservice: a self-hosted stateful asynchronous task service with destinations.

The package face: the version and the public names. Importing it stays cheap (no Flask, no Celery, no SQLAlchemy),
because every worker, relay and handler process imports it; `create_app` (taskservice.app) and the SDK's `Client`
(taskservice.client) are loaded when asked for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskservice.version import __version__

if TYPE_CHECKING:
    from taskservice.app import create_app
    from taskservice.client import Client

__all__ = ["Client", "__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from taskservice.app import create_app

        return create_app
    if name == "Client":  # the Python SDK; loaded when asked for, so `import taskservice` stays cheap
        from taskservice.client import Client

        return Client
    raise AttributeError(f"module 'taskservice' has no attribute {name!r}")
