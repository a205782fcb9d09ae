"""The chaos bench's handler: a no-op that first appends one line per execution to a marker file, so the bench can
count how often each invocation really ran (duplicate executions are allowed by at-least-once; they are reported).

Workers import it as `bench.chaos_handlers:counted` (they run with cwd = the repository, which is on sys.path).
"""
from __future__ import annotations

import os
import time
from typing import Any


def counted(event: dict[str, Any], context: Any) -> dict[str, Any]:
    marker = event.get("marker")
    if marker:
        # One short O_APPEND write per execution: lines from concurrent handler processes never interleave.
        fd = os.open(marker, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
        try:
            os.write(fd, f"{context.invocation_id} attempt={context.attempt} pid={os.getpid()}\n".encode())
        finally:
            os.close(fd)
    seconds = float(event.get("seconds", 0))
    if seconds > 0:
        time.sleep(seconds)
    return {"attempt": context.attempt}
