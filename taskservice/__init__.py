"""taskservice: a self-hosted stateful asynchronous task service with destinations.

The package face: the version and the public names. Importing it stays cheap (no Flask, no Celery, no SQLAlchemy),
because every worker, relay and handler process imports it; `create_app` is loaded from taskservice.app when asked
for.
"""
from __future__ import annotations

from typing import TYPE_CHECKING, Any

from taskservice.version import __version__

if TYPE_CHECKING:
    from taskservice.app import create_app

__all__ = ["__version__", "create_app"]


def __getattr__(name: str) -> Any:
    if name == "create_app":
        from taskservice.app import create_app

        return create_app
    raise AttributeError(f"module 'taskservice' has no attribute {name!r}")
