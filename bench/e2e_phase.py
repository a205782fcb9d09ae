"""Phase 2: end-to-end no-op invocations/s, taskservice against a bare Celery worker with the same pool.

Both sides run the same experiment: the worker is already up and warm; the bench submits N as fast as one process can
(taskservice through its in-process submitter, bare Celery through `delay()`), and the figure is N divided by the time
from the first submission to the last completion. Completions are timed by the consumer side (the ledger's
`finished_at`; the bare task's Redis timestamp), so polling adds no error.
"""
from __future__ import annotations

import time
from dataclasses import dataclass

import psutil

from bench import machine
from bench.bare_celery_app import NOOP_TASK, make_app, read_completion, reset_completion
from bench.procs import Launched
from bench.profiling import find_py_spy, start_recording, stop_recording, summarise
from bench.results import Figure, Report
from bench.rig import FUNCTION, Rig


@dataclass(frozen=True)
class E2ERun:
    n: int
    completed: int
    first_submit: float  # epoch seconds
    last_submit: float
    last_done: float | None
    cpu: machine.CpuBreakdown
    rerung: int = 0

    @property
    def rate(self) -> float | None:
        if self.completed < self.n or self.last_done is None:
            return None
        return self.n / (self.last_done - self.first_submit)

    @property
    def submit_rate(self) -> float:
        return self.n / max(self.last_submit - self.first_submit, 1e-9)

    def describe(self) -> str:
        done = (f"last completion {self.last_done - self.first_submit:.2f} s after the first submission"
                if self.last_done is not None else "no completion seen")
        incomplete = "" if self.completed >= self.n else f" INCOMPLETE: {self.completed}/{self.n} done;"
        return (f"N={self.n};{incomplete} submitting took {self.last_submit - self.first_submit:.2f} s "
                f"({self.submit_rate:.0f}/s while the worker ran); {done}")


def timeout_for(n: int) -> float:
    """Generous but bounded: a broken worker must not hang the bench."""
    return max(60.0, n / 20)


def run_taskservice(rig: Rig, n: int) -> E2ERun:
    rig.reset_ts()
    submitter = rig.in_process_services().submitter
    before = machine.snapshot(rig.procs.session_labels())
    first = time.time()
    for _ in range(n):
        submitter.submit(FUNCTION, {})
    last_submit = time.time()
    completed = rig.probe.wait_until("status = 'Succeeded'", n, timeout_s=timeout_for(n), check=rig.procs.check)
    cpu = machine.breakdown(before, machine.snapshot(rig.procs.session_labels()))
    return E2ERun(n, completed, first, last_submit, rig.probe.window().last_finished, cpu, rerung=rig.probe.rerung())


def run_bare(rig: Rig, n: int) -> E2ERun:
    task = make_app(rig.endpoints.amqp, rig.names.bare_queue).tasks[NOOP_TASK]
    key = rig.names.redis_key
    reset_completion(rig.redis, key)
    task.delay()  # connect outside the timed window; counted below
    deadline = time.monotonic() + 30
    while read_completion(rig.redis, key)[0] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    reset_completion(rig.redis, key)
    before = machine.snapshot(rig.procs.session_labels())
    first = time.time()
    for _ in range(n):
        task.delay()
    last_submit = time.time()
    deadline = time.monotonic() + timeout_for(n)
    while (done := read_completion(rig.redis, key))[0] < n and time.monotonic() < deadline:
        rig.procs.check()
        time.sleep(0.05)
    cpu = machine.breakdown(before, machine.snapshot(rig.procs.session_labels()))
    return E2ERun(n, done[0], first, last_submit, done[1], cpu)


def report_pair(report: Report, ts: E2ERun, bare: E2ERun, concurrency: int) -> None:
    report.add(Figure("2", f"taskservice end-to-end no-op/s (taskservice worker -c {concurrency})", ts.rate, "/s",
                      detail=(f"{ts.describe()}; {ts.rerung} invocations re-rung by the reaper while queued; "
                              f"CPU {ts.cpu.describe()}")))
    report.add(Figure("2", f"bare Celery end-to-end no-op/s (celery worker -c {concurrency} --pool prefork)",
                      bare.rate, "/s", detail=f"{bare.describe()}; CPU {bare.cpu.describe()}"))
    ratio = None if ts.rate is None or bare.rate is None else 100 * ts.rate / bare.rate
    report.add(Figure("2", "taskservice / bare Celery", ratio, "%", target="≥ 50 %",
                      met=None if ratio is None else ratio >= 50))


def profile_taskservice(rig: Rig, report: Report, worker: Launched, n: int) -> None:
    """A separate, profiled pass of the taskservice run (the measured pass is never profiled): py-spy on one pool
    process (wall and CPU views; the pool processes all do the same work) and on the Celery consumer process."""
    py_spy = find_py_spy()
    pool = psutil.Process(worker.pid).children()
    if py_spy is None or not pool:
        report.note("[2] profile skipped: " + ("py-spy not installed (pip install py-spy)" if py_spy is None
                                               else "no pool process found"))
        return
    targets = [(pool[0].pid, "ts-worker-pool", "wall"), (pool[0].pid, "ts-worker-pool", "cpu"),
               (worker.pid, "ts-worker-consumer", "cpu")]
    recordings = [start_recording(rig.procs, py_spy, pid, label, rig.results_dir, mode=mode)
                  for pid, label, mode in targets]
    time.sleep(1.0)  # let py-spy attach before the work starts
    try:
        profiled = run_taskservice(rig, n)
    finally:
        for recording in recordings:
            stop_recording(rig.procs, recording)
    rate = "n/a" if profiled.rate is None else f"{profiled.rate:.0f}/s"
    report.note(f"[2] profiled pass (py-spy attached, N={n}): {rate}")
    for recording in recordings:
        report.note(f"[2] profile ({recording.output.name}): " + "\n".join(summarise(recording)))
