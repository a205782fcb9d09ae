"""Warm executors: each pool slot keeps one pre-forked handler process that runs attempts one after another.

Why: forking the pool process for every attempt cost about a third of the pool's CPU on a no-op (bench/README.md).
A warm executor runs the next attempt in the process that ran the last one, and stays as isolated from the worker:

- It is forked from the slot's *zygote*, a process forked from the pool process before that opened any connection,
  in which every inherited descriptor but stdout/stderr was pointed at /dev/null (so a stray close can never hit a
  reused number) and the objects were frozen out of the garbage collector. No ledger engine, no broker socket, no
  thread of the worker's is reachable from a handler.
- Each attempt gets fresh pipes (messages, replies, output), passed over a Unix socket; the supervision is the
  sandbox's own (workers/sandbox.py), so logs, progress, fan-out, timeouts and verdicts behave as before.
- The executor is killed with its whole tree — process group and every descendant, which it collects as a child
  subreaper — after anything that is not a clean return (exception, Invalid, exit, signal, timeout, stop, hand-back),
  after a clean return that left a thread or a child process behind, after `max_attempts` attempts, or once its RSS
  passes `max_rss_bytes`; a fresh one is forked at once, while the worker persists the outcome.

The trade-off, as with a warm start on AWS Lambda: module state (globals, caches, imported modules) survives between
the attempts one executor runs, for any function. The working directory and the environment are restored after
each attempt; everything else a handler keeps across attempts it keeps at its own risk, and it never survives a
failure.
"""
from __future__ import annotations

import contextlib
import ctypes
import dataclasses
import gc
import json
import logging
import os
import selectors
import signal
import socket
import sys
import threading
import time
import traceback
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from workers.sandbox import Hooks, Job, Outcome, Supervision, kill_tree, preload_module, prepare_process, run_attempt

log = logging.getLogger(__name__)

_PR_SET_CHILD_SUBREAPER = 36
_MESSAGE_MAX = 64 * 1024  # zygote and executor control messages are small JSON; jobs travel on the attempt's pipe
_EXIT_WAIT_S = 30.0


def _neutralise_descriptors(keep: Iterable[int]) -> None:
    """Point every open descriptor except `keep` at /dev/null: the objects that own them (engines, broker
    connections, billiard's pipes) are still in memory, but reach nothing, and their numbers are never reused."""
    kept = set(keep) | {0, 1, 2}
    try:
        fds = [int(name) for name in os.listdir("/proc/self/fd")]
    except OSError:
        fds = list(range(3, 1024))
    devnull = os.open(os.devnull, os.O_RDWR)
    for fd in fds:
        if fd not in kept and fd != devnull:
            with contextlib.suppress(OSError):
                os.dup2(devnull, fd, inheritable=False)
    os.close(devnull)


def _become_subreaper() -> None:
    """Orphaned descendants (a handler's daemonised children) are re-parented to the executor, so the executor can
    tell it left nothing behind and kill_tree finds them. Linux only; elsewhere the process group still goes."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_CHILD_SUBREAPER, 1)


def _has_live_children() -> bool:
    """Reap what already ended; True if a child process is still running."""
    while True:
        try:
            pid, _ = os.waitpid(-1, os.WNOHANG)
        except ChildProcessError:
            return False
        if pid == 0:
            return True


def _rss_bytes() -> int:
    try:
        with open("/proc/self/statm") as fh:
            return int(fh.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
    except (OSError, ValueError, IndexError):
        import resource

        return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _epilogue(clean: bool) -> dict[str, Any]:
    """Whether this executor may run another attempt, and its memory, told to the worker with the result."""
    left_behind = threading.active_count() > 1 or _has_live_children()
    return {"clean": clean and not left_behind, "rss": _rss_bytes()}


def _executor_main(control_fd: int, zygote_pid: int) -> None:
    """The executor's life: receive an attempt's three pipes, run it, restore cwd and environment, repeat."""
    prepare_process(zygote_pid)
    _become_subreaper()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    devnull = os.open(os.devnull, os.O_WRONLY)
    control = socket.socket(fileno=control_fd)
    cwd, environ = os.getcwd(), dict(os.environ)
    while True:
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        try:
            message, fds, _, _ = socket.recv_fds(control, _MESSAGE_MAX, 3)
        except OSError:
            return
        if not message or len(fds) != 3:
            return
        msg_w, reply_r, out_w = fds
        run_attempt(None, msg_w, reply_r, out_w, epilogue=_epilogue)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        with contextlib.suppress(OSError):
            os.chdir(cwd)
        if os.environ != environ:
            os.environ.clear()
            os.environ.update(environ)


def _zygote_main(control: socket.socket, parent_pid: int) -> None:
    """The clean parent of a slot's executors: forks one on request, reports its pid and, later, its exit status."""
    from taskservice.lifetime import die_with_parent

    die_with_parent(signal.SIGKILL, parent_pid=parent_pid)
    for sig in (signal.SIGINT, signal.SIGTERM):  # a group-wide signal must not end a slot's executor mid-drain
        signal.signal(sig, signal.SIG_IGN)
    for sig in (signal.SIGQUIT, signal.SIGUSR1, signal.SIGUSR2, signal.SIGHUP, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    _neutralise_descriptors([control.fileno()])
    # Inherited objects are never collected here or in an executor, so no finalizer closes a descriptor; no
    # gc.collect() first, which would touch (and so copy) every page of the pool process's objects.
    gc.freeze()
    selector = selectors.DefaultSelector()
    selector.register(control, selectors.EVENT_READ, None)
    while True:
        for key, _ in selector.select():
            if key.data is None:
                message, fds, _, _ = socket.recv_fds(control, _MESSAGE_MAX, 1)
                if not message:
                    return
                request = json.loads(message)
                if request["t"] == "reap":
                    with contextlib.suppress(ChildProcessError):
                        os.waitpid(request["pid"], 0)
                    continue
                for ref in request.get("preload", []):
                    preload_module(ref)
                gc.freeze()
                pid = _fork_executor(fds[0], selector, control)
                os.close(fds[0])
                pidfd = os.pidfd_open(pid)
                selector.register(pidfd, selectors.EVENT_READ, pid)
                control.send(json.dumps({"t": "spawned", "pid": pid}).encode())
            else:
                # Report the exit but leave the zombie until the worker says "reap": until then the pid cannot be
                # reused, so the worker's kill_tree of this pid can never hit a stranger's process group.
                pid = key.data
                selector.unregister(key.fd)
                os.close(key.fd)
                info = os.waitid(os.P_PID, pid, os.WEXITED | os.WNOWAIT)
                status = _wait_status(info)
                control.send(json.dumps({"t": "exited", "pid": pid, "status": status}).encode())


def _wait_status(info: os.waitid_result | None) -> int:
    """waitid's answer as the status word waitpid would have given (what sandbox._describe_status reads)."""
    if info is None:
        return -1
    if info.si_code == os.CLD_EXITED:
        return (info.si_status & 0xFF) << 8
    return info.si_status & 0x7F


def _fork_executor(control_fd: int, selector: selectors.BaseSelector, zygote_control: socket.socket) -> int:
    zygote_pid = os.getpid()
    pid = os.fork()
    if pid != 0:
        return pid
    code = 0  # pragma: no cover - the executor process, which ends with os._exit
    try:
        for key in list(selector.get_map().values()):
            with contextlib.suppress(OSError):
                os.close(key.fd)
        selector.close()
        zygote_control.detach()
        _executor_main(control_fd, zygote_pid)
    except BaseException:
        code = 70
        with contextlib.suppress(OSError):
            os.write(2, traceback.format_exc().encode(errors="replace"))
    finally:
        os._exit(code)


@dataclass
class Executor:
    """The pool process's handle on one executor."""

    pid: int
    control: socket.socket
    attempts: int = 0
    rss: int = 0


@dataclass
class Zygote:
    """The pool process's handle on its slot's zygote."""

    pid: int
    control: socket.socket
    exits: dict[int, int] = field(default_factory=dict)
    pending: list[socket.socket] = field(default_factory=list)  # executor ends waiting for their "spawned"
    spawned: list[int] = field(default_factory=list)  # pids announced, in the order asked for

    @classmethod
    def start(cls) -> Zygote:
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        sys.stdout.flush()
        sys.stderr.flush()
        parent_pid = os.getpid()
        pid = os.fork()
        if pid == 0:  # pragma: no cover - the zygote process, which ends with os._exit
            code = 0
            try:
                ours.close()
                _zygote_main(theirs, parent_pid)
            except BaseException:
                code = 70
                with contextlib.suppress(OSError):
                    os.write(2, traceback.format_exc().encode(errors="replace"))
            finally:
                os._exit(code)
        theirs.close()
        return cls(pid, ours)

    def request_executor(self, preload: Iterable[str]) -> None:
        """Ask for a fresh executor without waiting for it (it forks while the worker persists an outcome)."""
        ours, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        try:
            socket.send_fds(self.control, [json.dumps({"t": "spawn", "preload": sorted(preload)}).encode()],
                            [theirs.fileno()])
        except OSError:
            ours.close()
            raise
        finally:
            theirs.close()
        self.pending.append(ours)

    def take_executor(self, timeout_s: float = _EXIT_WAIT_S) -> Executor:
        """The executor asked for first; raises OSError if the zygote does not answer."""
        deadline = time.monotonic() + timeout_s
        while not self.spawned:
            if self._receive(max(0.0, deadline - time.monotonic())) is None:
                raise OSError(f"the executor zygote {self.pid} did not answer within {timeout_s:g}s")
        return Executor(self.spawned.pop(0), self.pending.pop(0))

    def exit_status(self, pid: int, timeout_s: float = 0.0) -> int | None:
        """The executor's wait status once it ended (-1 if the zygote itself is gone), None while it runs."""
        deadline = time.monotonic() + timeout_s
        while pid not in self.exits:
            message = self._receive(max(0.0, deadline - time.monotonic()))
            if message is None:
                if pid in self.exits:
                    break
                return None if self.alive() else -1
        return self.exits[pid]

    def reap(self, pid: int) -> None:
        """The worker is done with this ended executor (its tree was killed): the zygote may release its pid."""
        self.exits.pop(pid, None)
        with contextlib.suppress(OSError):
            self.control.send(json.dumps({"t": "reap", "pid": pid}).encode())

    def alive(self) -> bool:
        try:
            pid, _ = os.waitpid(self.pid, os.WNOHANG)
        except ChildProcessError:
            return False
        return pid == 0

    def _receive(self, timeout_s: float) -> dict[str, Any] | None:
        """The next message, or None after `timeout_s`; "exited" messages are recorded on the way."""
        self.control.settimeout(timeout_s)
        try:
            data = self.control.recv(_MESSAGE_MAX)
        except (TimeoutError, BlockingIOError):
            return None
        except OSError:
            data = b""
        if not data:
            return None
        message: dict[str, Any] = json.loads(data)
        if message["t"] == "exited":
            self.exits[message["pid"]] = message["status"]
        elif message["t"] == "spawned":
            self.spawned.append(message["pid"])
        return message

    def close(self) -> None:
        """Kill the zygote and whatever it forked (its executors die with it anyway: PR_SET_PDEATHSIG)."""
        kill_tree(self.pid)
        with contextlib.suppress(ProcessLookupError):
            os.kill(self.pid, signal.SIGKILL)
        with contextlib.suppress(ChildProcessError):
            os.waitpid(self.pid, 0)
        self.control.close()
        for sock in self.pending:
            sock.close()


class _ExecutorExit:
    """The sandbox's ExitWatch for an executor, whose exit status comes from its zygote."""

    def __init__(self, zygote: Zygote, pid: int) -> None:
        self.zygote, self.pid = zygote, pid
        self.status: int | None = None

    def poll(self) -> int | None:
        if self.status is None:
            self.status = self.zygote.exit_status(self.pid)
        return self.status

    def wait(self, timeout_s: float) -> int | None:
        if self.status is None:
            self.status = self.zygote.exit_status(self.pid, timeout_s)
        return self.status


@dataclass(frozen=True)
class RecyclePolicy:
    """When an executor that returned cleanly is still replaced by a fresh one."""

    max_attempts: int = 100
    max_rss_bytes: int = 1024 * 1024 * 1024


class ExecutorSlot:
    """One pool slot's warm executor. Not thread-safe: a prefork pool process runs one attempt at a time.

    Start it before the pool process opens any connection (worker_process_init), so its zygote is clean."""

    def __init__(self, policy: RecyclePolicy) -> None:
        self.policy = policy
        self.preload: set[str] = set()
        self.zygote = Zygote.start()
        self.zygote.request_executor(self.preload)
        self.executor: Executor | None = None
        self.recycled = 0  # executors replaced so far (for logs and tests)

    def run(self, job: Job, hooks: Hooks, *, tick_s: float = 0.25) -> Outcome:
        """Run one attempt in the warm executor; same contract as sandbox.run_isolated."""
        self.preload.add(job.handler)
        msg_r, reply_w, out_r, executor = self._hand_over(job)
        hooks.on_start(executor.pid)
        supervision = Supervision(job, hooks, executor.pid, msg_r, reply_w, out_r, tick_s,
                                  _ExecutorExit(self.zygote, executor.pid), warm=True)
        try:
            outcome = supervision.run()
        finally:
            executor.attempts += 1
            report = supervision.report
            if report is not None:
                executor.rss = report.rss
            reason = self._recycle_reason(executor, supervision.kept_alive, report is not None and report.clean)
            if reason:
                self._retire(executor, reason)
        return outcome

    def _recycle_reason(self, executor: Executor, kept_alive: bool, clean: bool) -> str:
        if not kept_alive:
            return "the attempt did not end in a clean return"
        if not clean:
            return "the attempt left a thread or a child process behind"
        if executor.attempts >= self.policy.max_attempts:
            return f"it ran {executor.attempts} attempts"
        if executor.rss > self.policy.max_rss_bytes:
            return f"its RSS reached {executor.rss // (1024 * 1024)} MiB"
        return ""

    def _hand_over(self, job: Job) -> tuple[int, int, int, Executor]:
        """Give the job and its fresh pipes to the executor; an executor that died while idle is replaced."""
        body = (json.dumps(dataclasses.asdict(job)) + "\n").encode()
        for tries in range(3):
            executor = self._ready()
            msg_r, msg_w = os.pipe()
            reply_r, reply_w = os.pipe()
            out_r, out_w = os.pipe()
            try:
                socket.send_fds(executor.control, [b"job"], [msg_w, reply_r, out_w])
                _write_all(reply_w, body)
            except OSError:
                for fd in (msg_r, reply_w, out_r):
                    os.close(fd)
                if tries == 2:
                    raise
                self._retire(executor, "it was gone when the next attempt came")
                continue
            finally:
                for fd in (msg_w, reply_r, out_w):
                    os.close(fd)
            return msg_r, reply_w, out_r, executor
        raise AssertionError("unreachable")

    def _ready(self) -> Executor:
        if self.executor is None:
            try:
                if not self.zygote.pending:
                    self.zygote.request_executor(self.preload)
                self.executor = self.zygote.take_executor()
            except OSError:
                # The zygote died (killed from outside). A new one is forked from this pool process, which now
                # holds connections: it points them at /dev/null like the first one did, so handlers still see none.
                log.warning("executor zygote %s is gone; starting a new one", self.zygote.pid)
                self.zygote.close()
                self.zygote = Zygote.start()
                self.zygote.request_executor(self.preload)
                self.executor = self.zygote.take_executor()
        return self.executor

    def _retire(self, executor: Executor, reason: str) -> None:
        """Kill the executor with its whole tree, wait until it is gone, and have a fresh one forked."""
        log.info("executor %s replaced after %d attempt(s): %s", executor.pid, executor.attempts, reason)
        kill_tree(executor.pid)  # the zygote has not reaped it yet, so this pid is still the executor's
        if _ExecutorExit(self.zygote, executor.pid).wait(_EXIT_WAIT_S) is None:
            log.warning("executor %s did not exit within %.0fs of SIGKILL", executor.pid, _EXIT_WAIT_S)
        self.zygote.reap(executor.pid)
        executor.control.close()
        self.executor = None
        self.recycled += 1
        with contextlib.suppress(OSError):
            self.zygote.request_executor(self.preload)

    def close(self) -> None:
        if self.executor is not None:
            kill_tree(self.executor.pid)
            self.executor.control.close()
        self.zygote.close()


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]
