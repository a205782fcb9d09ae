"""The one clock: every timestamp the service writes is timezone-aware UTC, so SQLite and Postgres compare alike."""
from __future__ import annotations

from datetime import datetime, timezone


def utcnow() -> datetime:
    return datetime.now(timezone.utc)
