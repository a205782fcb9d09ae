"""The package version, in a module of its own so the API, webhooks and the CLI can name it without importing the
app factory (and Flask with it)."""
from __future__ import annotations

__version__ = "0.1.0"
