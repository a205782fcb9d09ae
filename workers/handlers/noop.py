"""Does nothing and returns null: the baseline for measuring the service's own overhead."""
from __future__ import annotations

from typing import Any


def handler(event: Any, context: Any) -> None:
    return None
