"""Handlers for the warm-executor tests: each reports the process it ran in, so a test can tell a reused executor
from a fresh one; workers import them as tests.executor_handlers:<name>."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from tests.handlers import hang_until_killed

_KEPT: list[bytes] = []  # memory a handler keeps across attempts (module state survives in a warm executor)


def _rss_mb() -> float:
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / (1024 * 1024)


def whoami(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """The executor's pid, RSS, cwd and one environment variable; allocates and keeps event["allocate_mb"] MiB."""
    if event.get("allocate_mb"):
        _KEPT.append(b"\x01" * (int(event["allocate_mb"]) * 1024 * 1024))
    return {"pid": os.getpid(), "rss_mb": _rss_mb(), "cwd": os.getcwd(), "marker": os.environ.get("WARM_MARKER")}


def dirty_state(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Changes the working directory and the environment, then returns cleanly."""
    os.environ["WARM_MARKER"] = "left by an earlier attempt"
    os.chdir(event["cwd"])
    return {"pid": os.getpid()}


def crash(event: dict[str, Any], context: Any) -> None:
    """Records its pid in event["pids"], then ends the way event["how"] says."""
    Path(event["pids"]).write_text(f"{os.getpid()}\n")
    how = event["how"]
    if how == "raise":
        raise RuntimeError("planned crash")
    if how == "exit":
        os._exit(3)
    if how == "sigkill":
        os.kill(os.getpid(), signal.SIGKILL)
    hang_until_killed()  # ends by timeout or stop


def tree_and_hang(event: dict[str, Any], context: Any) -> None:
    """Starts a child that starts a grandchild in a session of its own (out of the executor's process group), records
    the three pids in event["pids"] and hangs."""
    code = ("import signal, subprocess; "
            "p = subprocess.Popen(['sleep', '300'], start_new_session=True); "
            "print(p.pid, flush=True); signal.pause()")
    child = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
    assert child.stdout is not None
    grandchild = child.stdout.readline().strip()  # blocks until the child has started the grandchild
    if not grandchild:
        raise RuntimeError("the grandchild did not start")
    Path(event["pids"]).write_text(f"{os.getpid()} {child.pid} {grandchild}\n")
    hang_until_killed()


def leave_child(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Returns cleanly but leaves a child process (and a thread) running behind it."""
    child = subprocess.Popen(["sleep", "300"])
    threading.Thread(target=threading.Event().wait, daemon=True).start()  # waits for an event nobody sets
    return {"pid": os.getpid(), "child": child.pid}


def descriptors(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """What this process has open, and what the worker's processes above it (zygote, pool process, Celery main
    process) have open: readlink of every /proc/<pid>/fd entry."""
    import psutil

    def opened(pid: int) -> list[str]:
        targets = []
        for name in os.listdir(f"/proc/{pid}/fd"):
            try:
                targets.append(os.readlink(f"/proc/{pid}/fd/{name}"))
            except OSError:
                continue
        return targets

    worker = [p.pid for p in psutil.Process().parents()[:3]]
    return {"pid": os.getpid(), "mine": opened(os.getpid()), "worker": {str(pid): opened(pid) for pid in worker}}
