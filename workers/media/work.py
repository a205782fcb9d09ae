"""The per-attempt work directory and the transfer steps every media handler shares."""
from __future__ import annotations

import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from taskservice.storage import ObjectNotFound, Storage
from workers.media import BadEvent
from workers.media.ffmpeg import Probe, probe

DEFAULT_MAX_OUTPUT_BYTES = 16 * 1024**3
_EXT = re.compile(r"^[a-z0-9]{1,5}$")


@contextmanager
def workdir(prefix: str = "taskservice-media-") -> Iterator[Path]:
    """A private directory for one attempt; every local file name inside is generated here, never taken from a
    user's key. (A killed attempt cannot clean up: the sandbox's SIGKILL leaves it to the OS's tmp cleaning.)"""
    path = Path(tempfile.mkdtemp(prefix=prefix))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


def local_input_name(key: str) -> str:
    """`input.<ext>` with the key's extension only when it is plainly alphanumeric (it is a hint, never trusted)."""
    ext = key.rsplit(".", 1)[-1].lower() if "." in key.rsplit("/", 1)[-1] else ""
    return f"input.{ext if _EXT.fullmatch(ext) else 'bin'}"


def fetch_and_probe(storage: Storage, bucket: str, key: str, work: Path) -> Probe:
    """Stream the object to a local file and check it is real media before anything else runs on it."""
    path = work / local_input_name(key)
    try:
        storage.download(bucket, key, path)
    except ObjectNotFound as exc:
        raise BadEvent(str(exc)) from None
    return probe(path)


def max_output_bytes(event: dict[str, Any]) -> int:
    value = event.get("max_output_bytes", DEFAULT_MAX_OUTPUT_BYTES)
    if not isinstance(value, int) or not 0 < value <= DEFAULT_MAX_OUTPUT_BYTES:
        raise BadEvent(f"max_output_bytes must be an integer in 1..{DEFAULT_MAX_OUTPUT_BYTES}")
    return value


def ranged(report: Callable[[float, str], None], start: float, end: float, message: str) -> Callable[[float], None]:
    """Map a step's 0..1 progress onto [start, end] percent of the whole invocation, at most twice a second."""
    last = [0.0]

    def on_progress(fraction: float) -> None:
        now = time.monotonic()
        if now - last[0] >= 0.5 or fraction >= 1.0:
            last[0] = now
            report(start + (end - start) * fraction, message)

    return on_progress
