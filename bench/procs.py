"""Every process the benchmark launches, and the guarantee that it stops them all.

Each process is started in its own session (so its process group holds everything it forks: gunicorn workers, Celery
pool processes) and stopping it signals the whole group, SIGTERM first and SIGKILL when it lingers. `ProcessSet` is a
context manager so that an error or Ctrl-C in the middle of a phase still leaves no process behind.
"""
from __future__ import annotations

import contextlib
import os
import resource
import signal
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType

import requests


class BenchError(RuntimeError):
    """The benchmark cannot go on (a process died, a service is missing); the message says why."""


@dataclass
class Launched:
    name: str
    popen: subprocess.Popen[bytes]
    log_path: Path
    watched: bool = False  # the bench cannot go on without it: `ProcessSet.check()` fails fast when it has died

    @property
    def pid(self) -> int:
        return self.popen.pid

    def exit_status(self) -> str | None:
        """None while it runs, else how it ended. Does not reap it: until `stop()` has signalled its process group,
        its pid (and so its group id) cannot be handed to another process."""
        if self.popen.returncode is not None:
            return f"exit status {self.popen.returncode}"
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:
            return "exit status unknown"
        if info is None:
            return None
        killed = info.si_code in (os.CLD_KILLED, os.CLD_DUMPED)
        return f"{'killed by signal' if killed else 'exit status'} {info.si_status}"

    def alive(self) -> bool:
        return self.exit_status() is None

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""


class ProcessSet:
    def __init__(self, log_dir: Path, env: Mapping[str, str], cwd: Path) -> None:
        self.log_dir = log_dir
        self.env = dict(env)
        self.cwd = cwd
        self._launched: list[Launched] = []

    def __enter__(self) -> ProcessSet:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop_all()

    def start(self, name: str, argv: Sequence[str], *, extra_env: Mapping[str, str] | None = None,
              watched: bool = False) -> Launched:
        """Start `argv` in a new session with output to <log_dir>/<name>.log."""
        log_path = self.log_dir / f"{name}.log"
        with open(log_path, "ab") as log:
            popen = subprocess.Popen(list(argv), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                     env={**self.env, **(extra_env or {})}, cwd=self.cwd, start_new_session=True)
        launched = Launched(name, popen, log_path, watched)
        self._launched.append(launched)
        return launched

    def wait_with_rusage(self, launched: Launched) -> resource.struct_rusage:
        """Wait for a process that ends by itself (wrk) and return the CPU it used, so the load generator's own cost
        can be reported."""
        _, status, usage = os.wait4(launched.pid, 0)
        launched.popen.returncode = os.waitstatus_to_exitcode(status)
        return usage

    def stop(self, launched: Launched, *, timeout_s: float = 15.0, sig: int = signal.SIGTERM) -> None:
        """Signal the leader (gunicorn's master and Celery's main process shut their children down in order), wait
        for it to exit, SIGKILL its whole process group so that nothing it forked survives, and only then reap it."""
        if launched.popen.returncode is None:  # not reaped yet (wrk is reaped by wait_with_rusage)
            if launched.alive():
                with contextlib.suppress(ProcessLookupError):
                    os.kill(launched.pid, sig)
            deadline = time.monotonic() + timeout_s
            while launched.alive() and time.monotonic() < deadline:
                time.sleep(0.05)
            _signal_group(launched.pid, signal.SIGKILL)  # the unreaped leader keeps the group id ours
            launched.popen.wait()
        if launched in self._launched:
            self._launched.remove(launched)

    def stop_all(self) -> None:
        for launched in reversed(list(self._launched)):
            try:
                self.stop(launched, timeout_s=10.0)
            except Exception as exc:  # keep stopping the others
                print(f"warning: could not stop {launched.name} (pid {launched.pid}): {exc}")

    def session_labels(self) -> dict[int, str]:
        """Session id → name of every live launched process (its session holds its children too)."""
        return {launched.pid: launched.name for launched in self._launched if launched.alive()}

    def ensure_alive(self, launched: Launched) -> None:
        status = launched.exit_status()
        if status is not None:
            raise BenchError(f"{launched.name} (pid {launched.pid}) ended unexpectedly ({status}); "
                             f"last lines of {launched.log_path}:\n{launched.log_tail()}")

    def check(self) -> None:
        """Fail fast when a process the bench depends on (API, workers) has died, instead of waiting for a count
        that can no longer be reached."""
        for launched in self._launched:
            if launched.watched:
                self.ensure_alive(launched)


def _signal_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def wait_for_http(url: str, launched: Launched, procs: ProcessSet, *, timeout_s: float = 30.0) -> None:
    """Poll `url` until it answers 200; fail early with the log when the server process died."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        procs.ensure_alive(launched)
        with contextlib.suppress(requests.RequestException):
            if requests.get(url, timeout=2).status_code == 200:
                return
        time.sleep(0.2)
    raise BenchError(f"{launched.name} did not answer {url} within {timeout_s:.0f}s:\n{launched.log_tail()}")


def run_checked(argv: Sequence[str], *, env: Mapping[str, str], cwd: Path, timeout_s: float = 120.0) -> str:
    """Run a short command to completion (migrate); its output in the error when it fails."""
    done = subprocess.run(list(argv), env=dict(env), cwd=cwd, capture_output=True, text=True, timeout=timeout_s)
    if done.returncode != 0:
        raise BenchError(f"{' '.join(argv)} failed ({done.returncode}):\n{done.stdout}\n{done.stderr}")
    return done.stdout
