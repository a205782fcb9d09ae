"""Exponential backoff, shared by handler retries and destination redeliveries so both grow the same way."""
from __future__ import annotations


def backoff_delay(attempt: int, base_s: float, max_s: float) -> float:
    """base, 2×base, 4×base … for attempts 1, 2, 3 …, capped at max_s."""
    return min(max_s, base_s * 2 ** max(0, attempt - 1))
