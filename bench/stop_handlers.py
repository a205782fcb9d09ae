"""Handlers for the stop benchmark, on both sides: a task that starts a child process (as an ffmpeg transcode does),
writes both pids to a file, then runs until it is stopped."""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path
from typing import Any


def hang_with_child(pid_file: str) -> None:
    child = subprocess.Popen(["sleep", "600"])
    tmp = Path(f"{pid_file}.tmp")
    tmp.write_text(f"{os.getpid()} {child.pid}\n")
    tmp.rename(pid_file)  # atomic: the bench never reads half a file
    time.sleep(600)


def handler(event: dict[str, Any], context: Any) -> None:
    """taskservice handler: the same work as the bare Celery task."""
    hang_with_child(event["pid_file"])
