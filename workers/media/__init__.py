"""Media helpers for the built-in functions: formats and their codecs, safe keys and ids, and the ffmpeg boundary.

Errors a handler raises for a bad event subclass `workers.context.InvalidEvent`, so the invocation ends Invalid at
once (no retry could fix the event) and nothing is written to storage; ffmpeg failures stay ordinary, retryable
errors.
"""
from __future__ import annotations

from workers.context import InvalidEvent


class BadEvent(InvalidEvent):
    """A missing or malformed event field, or an object key that is refused."""


class UnsafeInput(InvalidEvent):
    """The input is not a real media container (a playlist, a concat list, text) or has no audio/video stream."""


class OutputTooLarge(InvalidEvent):
    """The output reached the size bound; the same input and options would reach it again."""


class MediaFailed(Exception):
    """ffmpeg or ffprobe failed on an input that passed the checks (retryable: it may be a transient fault)."""


class ChildrenFailed(Exception):
    """One or more child invocations ended without succeeding."""
