"""Runs handler attempts in a process and session of their own, and supervises them.

Why a process: a timeout or a stop must be able to kill the handler together with everything it started (ffmpeg
children included) without killing the Celery worker, and a handler must never share the worker's database or broker
connections. Why fork rather than spawn: it costs a few milliseconds instead of a fresh interpreter. The worker keeps
such a process warm per pool slot (workers/executors.py) and uses this module's attempt runner and supervision for
it; `run_isolated` is the one-attempt, one-fork form.
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


def prepare_process(parent_pid: int) -> None:
    """Make this freshly forked process the leader of its own session (so its whole group can be killed at once),
    tie its life to `parent_pid` and give it default signal handling and no stdin."""
    os.setsid()
    _die_with_parent(parent_pid)
    for sig in (signal.SIGINT, signal.SIGQUIT, signal.SIGUSR1, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_RDONLY)
    os.dup2(devnull, 0)
    os.close(devnull)


def run_attempt(job: Job | None, msg_w: int, reply_r: int, out_w: int,
                epilogue: Callable[[bool], dict[str, Any]] | None = None) -> bool:
    """Run one attempt in this (handler) process: stdout/stderr go to `out_w`, messages to `msg_w`, replies come from
    `reply_r`; all three are closed at the end. With `job` None the job is the first line on `reply_r` (how a warm
    executor receives it). `epilogue(clean)` may add a last message about the process before the channel closes.
    Returns True only when the handler returned a JSON result (a clean return)."""
    os.dup2(out_w, 1)
    os.dup2(out_w, 2)
    os.close(out_w)
    # Celery replaces sys.stdout/err with logging proxies; the handler gets real line-buffered files on the pipe.
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="replace", closefd=False)
    channel = Channel(os.fdopen(msg_w, "wb"), os.fdopen(reply_r, "rb"))
    try:
        if job is None:
            job = Job(**json.loads(channel.receive()))
        clean = _run_handler(job, channel)
        if epilogue is not None:
            channel.send({"t": "executor", **epilogue(clean)})
        return clean
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        channel.close()


def _run_handler(job: Job, channel: Channel) -> bool:
    context = Context(channel, request_id=job.request_id, invocation_id=job.invocation_id, function=job.function,
                      attempt=job.attempt, timeout_s=int(job.timeout_s), storage_url=job.storage_url,
                      storage_endpoints=job.storage_endpoints)
    signal.signal(signal.SIGTERM, lambda *_: context._mark_stopping())
    try:
        handler = load_handler(job.handler)
    except Exception as exc:
        channel.send({"t": "invalid", "type": type(exc).__name__,
                      "msg": f"cannot load handler {job.handler!r}: {type(exc).__name__}: {exc}"})
        return False
    try:
        result = handler(json.loads(job.payload), context)
        try:
            json.dumps(result, allow_nan=False)
        except (TypeError, ValueError) as exc:
            channel.send({"t": "error", "type": "ResultNotSerializable",
                          "msg": f"the handler returned a value that is not JSON: {exc}"})
            return False
        sys.stdout.flush()  # what the handler printed is in the pipe before its result is
        sys.stderr.flush()
        channel.send({"t": "result", "value": result})
        return True
    except InvalidEvent as exc:  # the event can never succeed: no retry
        channel.send({"t": "invalid", "type": type(exc).__name__, "msg": str(exc) or type(exc).__name__})
    except BaseException as exc:  # SystemExit and KeyboardInterrupt from a handler are failures too
        channel.send({"t": "error", "type": type(exc).__name__, "msg": str(exc) or type(exc).__name__,
                      "tb": traceback.format_exc()})
    return False


def _child_main(job: Job, msg_w: int, reply_r: int, out_w: int, parent_pid: int) -> None:
    prepare_process(parent_pid)
    run_attempt(job, msg_w, reply_r, out_w)


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
    """Fork a fresh process for this one attempt (the cold path), run the handler, relay its messages to `hooks`,
    and enforce the timeout. Workers use warm executors (workers/executors.py) instead; this stays for tools and
    tests that want one attempt in one throwaway process."""
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
    return Supervision(job, hooks, pid, msg_r, reply_w, out_r, tick_s, ChildExit(pid)).run()


class ExitWatch(Protocol):
    """How the supervisor learns that the handler process ended and with which wait status (-1: unknown)."""

    def poll(self) -> int | None: ...
    def wait(self, timeout_s: float) -> int | None: ...


class ChildExit:
    """The handler process is our own child: waitpid tells."""

    def __init__(self, pid: int) -> None:
        self.pid = pid
        self.status: int | None = None

    def poll(self) -> int | None:
        if self.status is None:
            try:
                pid, status = os.waitpid(self.pid, os.WNOHANG)
            except ChildProcessError:
                self.status = -1
            else:
                if pid != 0:
                    self.status = status
        return self.status

    def wait(self, timeout_s: float) -> int | None:
        deadline = time.monotonic() + timeout_s
        while self.poll() is None and time.monotonic() < deadline:
            time.sleep(0.001)
        return self.status


@dataclass(frozen=True)
class ExecutorReport:
    """What a warm executor says about itself after a clean return: whether it may run another attempt (no thread
    or child process left behind) and its resident memory."""

    clean: bool
    rss: int


class Supervision:
    """Relays one attempt's messages and output to the hooks and enforces its timeout and verdicts.

    `warm`: the process is a warm executor that outlives a successful attempt (it closes the attempt's channel
    instead of exiting); after anything else the process is killed with its whole tree, as in the cold path."""

    def __init__(self, job: Job, hooks: Hooks, pid: int, msg_r: int, reply_w: int, out_r: int, tick_s: float,
                 exits: ExitWatch, *, warm: bool = False) -> None:
        self.job, self.hooks, self.pid, self.tick_s = job, hooks, pid, tick_s
        self.reply_w = reply_w
        self.exits = exits
        self.warm = warm
        self.final: Outcome | None = None
        self.report: ExecutorReport | None = None
        self.kept_alive = False  # True when the (warm) process survived the attempt and may run the next one
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
        elif kind == "executor":
            self.report = ExecutorReport(clean=bool(message["clean"]), rss=int(message["rss"]))

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
                    if self.warm and self.final is not None:  # the executor ended the attempt and lives on
                        self.kept_alive = self.final.kind == "succeeded" and self.report is not None
                        break
                    exit_status = self._reap(deadline)
                    if exit_status is not None:
                        break
                now = time.monotonic()
                if now >= deadline:
                    return Outcome("timeout", error_type="Timeout",
                                   error=f"the handler ran longer than timeout_s={self.job.timeout_s:g} and was killed "
                                         "with its child processes")
                if now >= next_tick:
                    next_tick = now + self.tick_s
                    verdict = self.hooks.on_tick()
                    if verdict is not None:
                        return _VERDICTS[verdict]
                    if exit_status is None:
                        exit_status = self.exits.poll()
                        if exit_status is not None and not self.messages.closed:
                            self.messages.pump()
                            break
            self._drain(selector)
            if self.final is not None:
                return self.final
            return Outcome("failed", error_type="ProcessExited",
                           error=f"the handler process ended without a result ({_describe_status(exit_status)})")
        finally:
            if not self.kept_alive:
                kill_tree(self.pid)  # whatever the handler left running in its group goes with it
                self.exits.wait(30.0)
            selector.close()
            for fd in (self.messages.fd, self.output.fd, self.reply_w):
                with contextlib.suppress(OSError):
                    os.close(fd)

    def _reap(self, deadline: float) -> int | None:
        """The handler closed its channel: collect its exit status, waiting briefly for it to finish exiting."""
        while time.monotonic() < deadline:
            status = self.exits.poll()
            if status is not None:
                return status
            time.sleep(0.001)
        return None

    def _drain(self, selector: selectors.BaseSelector) -> None:
        """Read what the handler wrote before it ended; grandchildren holding the pipe must not block us."""
        for _ in range(100):
            if not _pump_ready(selector, 0):
                return


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
