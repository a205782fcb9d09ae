"""Handlers for the multi-host tests; workers import them as tests.multihost.handlers:<name>.

Every record a test asserts on is written by the handler itself, from its own clock and process, into a directory
all namespaces share (network namespaces share the filesystem and the pid namespace)."""
from __future__ import annotations

import contextlib
import json
import os
import subprocess
import time
from pathlib import Path
from typing import Any

import psutil

TICK_S = 0.2
STARTS = "starts.jsonl"
TICKS = "ticks.log"


def _append(path: Path, line: str) -> None:
    with open(path, "a") as fh:
        fh.write(line + "\n")
        fh.flush()


def _alive(pid: int, create_time: float) -> bool:
    """Whether that very process (not a later one that reused its pid) still runs; a zombie has ended."""
    try:
        proc = psutil.Process(pid)
        return abs(proc.create_time() - create_time) < 0.01 and proc.status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def earlier_attempts(directory: Path) -> list[dict[str, Any]]:
    path = directory / STARTS
    if not path.exists():
        return []
    records = []
    for line in path.read_text().splitlines():
        with contextlib.suppress(ValueError):  # a record being appended right now may be read half-written
            records.append(json.loads(line))
    return records


def long_ticker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Runs event["seconds"] on the first attempt (event["later_seconds"] on later ones), writing a tick line
    "<attempt> <host> <time.time()>" every 0.2 s to <dir>/ticks.log. It first starts a child process (so the
    process *tree* has to die, as with ffmpeg) and appends one JSON start record to <dir>/starts.jsonl: its pid and
    its child's, and which processes of earlier attempts were still alive when it started."""
    directory = Path(event["dir"])
    host = os.environ.get("TS_TEST_HOST", "?")
    seconds = float(event["seconds"] if context.attempt == 1 else event.get("later_seconds", event["seconds"]))
    child = subprocess.Popen(["sleep", str(int(seconds) + 30)])
    me, kid = psutil.Process(), psutil.Process(child.pid)
    still_alive = [{"attempt": rec["attempt"], "pid": pid}
                   for rec in earlier_attempts(directory)
                   for pid, created in ((rec["pid"], rec["pid_created"]), (rec["child_pid"], rec["child_created"]))
                   if _alive(pid, created)]
    start = time.time()
    _append(directory / STARTS, json.dumps({
        "attempt": context.attempt, "host": host, "pid": me.pid, "pid_created": me.create_time(),
        "child_pid": kid.pid, "child_created": kid.create_time(), "at": start, "alive_at_start": still_alive}))
    _append(directory / TICKS, f"{context.attempt} {host} {start}")
    while time.time() < start + seconds:
        # A log line per tick: whenever the link is cut some are still buffered in the worker (it flushes every
        # 0.5 s), so a stale worker that writes its buffer once it is back shows in the ledger every time.
        context.logger.info("attempt %d on %s at %.3f", context.attempt, host, time.time())
        time.sleep(TICK_S)
        _append(directory / TICKS, f"{context.attempt} {host} {time.time()}")
    child.kill()
    child.wait()
    return {"attempt": context.attempt, "host": host}


def where(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A probe: says which namespace ran it."""
    return {"host": os.environ.get("TS_TEST_HOST", "?"), "pid": os.getpid()}
