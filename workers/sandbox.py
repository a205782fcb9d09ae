"""Runs one handler attempt in its own forked process and session, and supervises it.

Why a process: a timeout or a stop must be able to kill the handler together with everything it started (ffmpeg
children included) without killing the Celery worker, and a handler must never share the worker's database or broker
connections. Why fork rather than spawn: it costs a few milliseconds instead of a fresh interpreter.
"""
from __future__ import annotations

import contextlib
import importlib
import json
import os
import selectors
import signal
import sys
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

import psutil

from taskservice.clock import utcnow
from taskservice.lifetime import die_with_parent
from workers.context import Channel, Context, InvalidEvent

OUTPUT_LEVEL = "OUTPUT"


@dataclass(frozen=True)
class Job:
    handler: str
    payload: str
    request_id: str
    invocation_id: str
    function: str
    attempt: int
    timeout_s: float
    storage_url: str = ""
    storage_endpoints: str = ""


@dataclass(frozen=True)
class Outcome:
    kind: str  # "succeeded" | "failed" | "invalid" | "timeout" | "stopped" | "abandoned" | "handed_back"
    result: Any = None
    error_type: str = ""
    error: str = ""


class Hooks(Protocol):
    def on_start(self, pid: int) -> None:
        """The handler process is running as `pid` (its process group too)."""
    def on_log(self, at: str, level: str, message: str) -> None: ...
    def on_progress(self, percent: float, message: str) -> None: ...
    def on_submit(self, function: str, payload: Any, invocation_id: str | None) -> dict[str, Any]: ...
    def on_children(self, children: list[list[str]]) -> dict[str, Any]: ...
    def on_storage_events(self, events: list[dict[str, Any]]) -> dict[str, Any]:
        """Objects the handler wrote or removed through context.storage (they may fire storage triggers)."""
    def on_tick(self) -> str | None:
        """Called every tick; returns "stop", "abandon" or "handback" to end the attempt early. Must not block."""


def load_handler(ref: str) -> Callable[[Any, Context], Any]:
    module_name, _, attr = ref.partition(":")
    target: Any = importlib.import_module(module_name)
    for part in attr.split("."):
        target = getattr(target, part)
    if not callable(target):
        raise TypeError(f"{ref} is not callable")
    return target  # type: ignore[no-any-return]


def preload_module(ref: str) -> None:
    """Import the handler's module in the worker process, once, so every forked attempt inherits it instead of
    importing it again. A module that fails to import here is left to the attempt, which reports it as Invalid."""
    module_name = ref.partition(":")[0]
    if module_name in sys.modules:
        return
    try:
        importlib.import_module(module_name)
    except Exception:  # the forked attempt imports it again and turns the error into an Invalid outcome
        sys.modules.pop(module_name, None)


def kill_tree(pid: int) -> None:
    """SIGKILL the handler, its process group and any descendant that left the group (setsid'd children)."""
    try:
        descendants = psutil.Process(pid).children(recursive=True)
    except psutil.Error:
        descendants = []
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    for proc in descendants:
        with contextlib.suppress(psutil.Error):
            proc.kill()


def _die_with_parent(parent_pid: int) -> None:
    """If the worker dies (even by SIGKILL), take the handler's whole process group with it, so a lapsed lease
    never leaves an old attempt running next to the new one. Not on Linux, the lease still protects correctness;
    only cleanup is slower."""
    signal.signal(signal.SIGUSR2, lambda *_: os.killpg(0, signal.SIGKILL))
    die_with_parent(signal.SIGUSR2, parent_pid=parent_pid)


def _child_main(job: Job, msg_w: int, reply_r: int, out_w: int, parent_pid: int) -> None:
    os.setsid()
    _die_with_parent(parent_pid)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.close(out_w)
    # Celery replaces sys.stdout/err with logging proxies; the handler gets real line-buffered files on the pipe.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    channel = Channel(os.fdopen(msg_w, "wb"), os.fdopen(reply_r, "rb"))
    context = Context(channel, request_id=job.request_id, invocation_id=job.invocation_id, function=job.function,
                      attempt=job.attempt, timeout_s=int(job.timeout_s), storage_url=job.storage_url,
                      storage_endpoints=job.storage_endpoints)
    signal.signal(signal.SIGTERM, lambda *_: context._mark_stopping())
    try:
        handler = load_handler(job.handler)
    except Exception as exc:
        channel.send({"t": "invalid", "type": type(exc).__name__,
                      "msg": f"cannot load handler {job.handler!r}: {type(exc).__name__}: {exc}"})
        return
    try:
        result = handler(json.loads(job.payload), context)
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            channel.send({"t": "error", "type": "ResultNotSerializable",
                          "msg": f"the handler returned a value that is not JSON: {exc}"})
            return
        channel.send({"t": "result", "value": result})
    except InvalidEvent as exc:  # the event can never succeed: no retry
        channel.send({"t": "invalid", "type": type(exc).__name__, "msg": str(exc) or type(exc).__name__})
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a handler are failures too
        channel.send({"t": "error", "type": type(exc).__name__, "msg": str(exc) or type(exc).__name__,
                      "tb": traceback.format_exc()})


class _LineReader:
    def __init__(self, fd: int, on_line: Callable[[bytes], None]) -> None:
        self.fd = fd
        self.on_line = on_line
        self.buffer = b""
        self.closed = False

    def pump(self) -> None:
        try:
            chunk = os.read(self.fd, 65536)
        except BlockingIOError:
            return
        if not chunk:
            self.closed = True
            if self.buffer:
                self.on_line(self.buffer)
                self.buffer = b""
            return
        self.buffer += chunk
        *lines, self.buffer = self.buffer.split(b"\n")
        for line in lines:
            self.on_line(line)


def run_isolated(job: Job, hooks: Hooks, *, tick_s: float = 0.25) -> Outcome:
    """Fork, run the handler, relay its messages to `hooks`, and enforce the timeout."""
    msg_r, msg_w = os.pipe()
    reply_r, reply_w = os.pipe()
    out_r, out_w = os.pipe()
    sys.stdout.flush()
    sys.stderr.flush()
    parent_pid = os.getpid()
    pid = os.fork()
    if pid == 0:  # pragma: no cover - runs in the handler process, which ends with os._exit
        code = 0
        try:
            for fd in (msg_r, reply_w, out_r):
                os.close(fd)
            _child_main(job, msg_w, reply_r, out_w, parent_pid)
        except BaseException:
            code = 70
            os.write(2, traceback.format_exc().encode(errors="replace"))
        finally:
            try:
                sys.stdout.flush()
                sys.stderr.flush()
            finally:
                os._exit(code)
    for fd in (msg_w, reply_r, out_w):
        os.close(fd)
    hooks.on_start(pid)
    return _Supervision(job, hooks, pid, msg_r, reply_w, out_r, tick_s).run()


class _Supervision:
    def __init__(self, job: Job, hooks: Hooks, pid: int, msg_r: int, reply_w: int, out_r: int, tick_s: float) -> None:
        self.job, self.hooks, self.pid, self.tick_s = job, hooks, pid, tick_s
        self.reply_w = reply_w
        self.final: Outcome | None = None
        self.pid_reaped = False
        self.messages = _LineReader(msg_r, self._on_message)
        self.output = _LineReader(out_r, self._on_output)

    def _on_output(self, line: bytes) -> None:
        text = line.decode("utf-8", "replace").rstrip("\r")
        if text:
            self.hooks.on_log(_now_iso(), OUTPUT_LEVEL, text)

    def _on_message(self, line: bytes) -> None:
        message = json.loads(line)
        kind = message["t"]
        if kind == "log":
            self.hooks.on_log(message["at"], message["level"], message["msg"])
        elif kind == "progress":
            self.hooks.on_progress(message["percent"], message["msg"])
        elif kind == "submit":
            reply = self.hooks.on_submit(message["function"], message["payload"], message.get("invocation_id"))
            os.write(self.reply_w, (json.dumps(reply) + "\n").encode())
        elif kind == "start_execution":  # hooks without flows (tests, tools) refuse it clearly
            start = getattr(self.hooks, "on_start_execution", None)
            reply = ({"error": {"code": "FlowsUnavailable", "message": "this runner cannot start flow executions"}}
                     if start is None else start(message["flow"], message["payload"], message["name"]))
            os.write(self.reply_w, (json.dumps(reply, default=str) + "\n").encode())
        elif kind == "children":
            reply = self.hooks.on_children(message["children"])
            os.write(self.reply_w, (json.dumps(reply, default=str) + "\n").encode())
        elif kind == "storage_events":  # hooks that do not publish storage events (tests, tools) drop them
            publish = getattr(self.hooks, "on_storage_events", None)
            reply = {"submitted": 0} if publish is None else publish(message["events"])
            os.write(self.reply_w, (json.dumps(reply, default=str) + "\n").encode())
        elif kind == "result":
            self.final = Outcome("succeeded", result=message["value"])
        elif kind == "error":
            error = message["msg"] + ("\n\n" + message["tb"] if message.get("tb") else "")
            self.final = Outcome("failed", error_type=message["type"], error=error)
        elif kind == "invalid":
            self.final = Outcome("invalid", error_type=message["type"], error=message["msg"])

    def run(self) -> Outcome:
        selector = selectors.DefaultSelector()
        for reader in (self.messages, self.output):
            os.set_blocking(reader.fd, False)
            selector.register(reader.fd, selectors.EVENT_READ, reader)
        deadline = time.monotonic() + self.job.timeout_s
        next_tick = time.monotonic() + self.tick_s
        exit_status: int | None = None
        try:
            while True:
                now = time.monotonic()
                wait = max(0.0, min(next_tick, deadline) - now)
                _pump_ready(selector, wait)
                if self.messages.closed:
                    exit_status = self._reap(deadline)
                    if exit_status is not None:
                        break
                now = time.monotonic()
                if now >= deadline:
                    kill_tree(self.pid)
                    return Outcome("timeout", error_type="Timeout",
                                   error=f"the handler ran longer than timeout_s={self.job.timeout_s:g} and was killed "
                                         "with its child processes")
                if now >= next_tick:
                    next_tick = now + self.tick_s
                    verdict = self.hooks.on_tick()
                    if verdict is not None:
                        kill_tree(self.pid)
                        return _VERDICTS[verdict]
                    if exit_status is None:
                        exit_status = self._poll_exit()
                        if exit_status is not None and not self.messages.closed:
                            self.messages.pump()
                            break
            self._drain(selector)
            if self.final is not None:
                return self.final
            return Outcome("failed", error_type="ProcessExited",
                           error=f"the handler process ended without a result ({_describe_status(exit_status)})")
        finally:
            kill_tree(self.pid)  # whatever the handler left running in its group goes with it
            self._wait_quietly()
            selector.close()
            for fd in (self.messages.fd, self.output.fd, self.reply_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _reap(self, deadline: float) -> int | None:
        """The handler closed its channel: collect its exit status, waiting briefly for it to finish exiting."""
        while time.monotonic() < deadline:
            status = self._poll_exit()
            if status is not None:
                return status
            time.sleep(0.001)
        return None

    def _poll_exit(self) -> int | None:
        try:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return -1
        if pid == 0:
            return None
        self.pid_reaped = True
        return status

    def _drain(self, selector: selectors.BaseSelector) -> None:
        """Read what the handler wrote before it exited; grandchildren holding the pipe must not block us."""
        for _ in range(100):
            if not _pump_ready(selector, 0):
                return

    def _wait_quietly(self) -> None:
        if self.pid_reaped:
            return
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)


_VERDICTS = {
    "stop": Outcome("stopped", error_type="Stopped",
                    error="stopped on request; the handler and its child processes were killed"),
    "abandon": Outcome("abandoned", error_type="Abandoned",
                       error="this attempt no longer holds the invocation; the handler was killed"),
    "handback": Outcome("handed_back", error_type="WorkerDraining",
                        error="the worker was shutting down and its drain time ran out; handed to another worker"),
}


def _pump_ready(selector: selectors.BaseSelector, wait: float) -> bool:
    """Read every pipe that is ready within `wait` seconds; False when none was."""
    ready = selector.select(wait)
    for key, _ in ready:
        reader: _LineReader = key.data
        reader.pump()
        if reader.closed:
            selector.unregister(reader.fd)
    return bool(ready)


def _describe_status(status: int | None) -> str:
    if status is None or status < 0:
        return "exit status unknown"
    if os.WIFSIGNALED(status):
        return f"killed by signal {signal.Signals(os.WTERMSIG(status)).name}"
    return f"exit code {os.WEXITSTATUS(status)}"


def _now_iso() -> str:
    return utcnow().isoformat()
