"""Phase 2: end-to-end no-op invocations/s, taskservice against a bare Celery worker with the same pool.

Both sides run the same experiment: the worker is already up and warm; the bench submits N as fast as one process can
(taskservice through its in-process submitter, bare Celery through `delay()`), and the figure is N divided by the time
from the first submission to the last completion. Completions are timed by the consumer side (the ledger's
`finished_at`; the bare task's Redis timestamp), so polling adds no error.

A second experiment takes the submitter out: each worker is paused (SIGSTOP to its process group) while N are
submitted, and the figure is N divided by the time from resuming it (SIGCONT) to the last completion, so it is what
the worker side can drain from a queued backlog.
"""
from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Callable, Iterator
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
    resumed: float | None = None  # a drain: when the paused worker was resumed, which starts the clock

    @property
    def clock_start(self) -> float:
        return self.first_submit if self.resumed is None else self.resumed

    @property
    def rate(self) -> float | None:
        if self.completed < self.n or self.last_done is None:
            return None
        return self.n / (self.last_done - self.clock_start)

    def describe(self) -> str:
        since = "the first submission" if self.resumed is None else "resuming"
        done = (f"last completion {self.last_done - self.clock_start:.2f} s after {since}"
                if self.last_done is not None else "no completion seen")
        incomplete = "" if self.completed >= self.n else f" INCOMPLETE: {self.completed}/{self.n} done;"
        submit_s = self.last_submit - self.first_submit
        queued = (f"submitting took {submit_s:.2f} s ({self.n / max(submit_s, 1e-9):.0f}/s while the worker ran)"
                  if self.resumed is None else f"queued in {submit_s:.2f} s with the worker paused")
        return f"N={self.n};{incomplete} {queued}; {done}"


def timeout_for(n: int) -> float:
    """Generous but bounded: a broken worker must not hang the bench."""
    return max(60.0, n / 20)


@contextlib.contextmanager
def paused(worker: Launched | None) -> Iterator[None]:
    """The worker's whole process group stopped (main process, pool, executors) for the block; nothing when
    `worker` is None. It holds no attempt while paused, so no lease can lapse; the pause lasts seconds, far below the
    broker's heartbeat timeout."""
    if worker is None:
        yield
        return
    os.killpg(worker.pid, signal.SIGSTOP)
    try:
        yield
    finally:
        os.killpg(worker.pid, signal.SIGCONT)


def _timed(rig: Rig, n: int, submit_one: Callable[[], object], wait_done: Callable[[], tuple[int, float | None]],
           paused_worker: Launched | None) -> E2ERun:
    """Submit n and wait for their completions. With `paused_worker`, that worker is paused while they are queued
    and the clock starts when it is resumed (a drain); otherwise it runs while they are submitted."""
    def snapshot() -> machine.CpuSnapshot:
        return machine.snapshot(rig.procs.session_labels())

    resumed = None
    with paused(paused_worker):
        before = snapshot()
        first = time.time()
        for _ in range(n):
            submit_one()
        last_submit = time.time()
        if paused_worker is not None:  # CPU and clock from the moment the worker may run again
            before, resumed = snapshot(), time.time()
    completed, last_done = wait_done()
    cpu = machine.breakdown(before, snapshot())
    return E2ERun(n, completed, first, last_submit, last_done, cpu, resumed=resumed)


def run_taskservice(rig: Rig, n: int, *, paused_worker: Launched | None = None) -> E2ERun:
    rig.reset_ts()
    submitter = rig.in_process_services().submitter

    def wait_done() -> tuple[int, float | None]:
        completed = rig.probe.wait_until("status = 'Succeeded'", n, timeout_s=timeout_for(n), check=rig.procs.check)
        return completed, rig.probe.window().last_finished

    run = _timed(rig, n, lambda: submitter.submit(FUNCTION, {}), wait_done, paused_worker)
    return dataclasses.replace(run, rerung=rig.probe.rerung())


def run_bare(rig: Rig, n: int, *, paused_worker: Launched | None = None) -> E2ERun:
    task = make_app(rig.endpoints.amqp, rig.names.bare_queue).tasks[NOOP_TASK]
    key = rig.names.redis_key
    reset_completion(rig.redis, key)
    task.delay()  # connect outside the timed window; counted below
    deadline = time.monotonic() + 30
    while read_completion(rig.redis, key)[0] < 1 and time.monotonic() < deadline:
        time.sleep(0.01)
    reset_completion(rig.redis, key)

    def wait_done() -> tuple[int, float | None]:
        deadline = time.monotonic() + timeout_for(n)
        while (done := read_completion(rig.redis, key))[0] < n and time.monotonic() < deadline:
            rig.procs.check()
            time.sleep(0.05)
        return done

    return _timed(rig, n, task.delay, wait_done, paused_worker)


def report_pair(report: Report, ts: E2ERun, bare: E2ERun, concurrency: int) -> None:
    report.add(Figure("2", f"taskservice end-to-end no-op/s (taskservice worker -c {concurrency})", ts.rate, "/s",
                      detail=(f"{ts.describe()}; {ts.rerung} invocations re-rung by the reaper while queued; "
                              f"CPU {ts.cpu.describe()}")))
    report.add(Figure("2", f"bare Celery end-to-end no-op/s (celery worker -c {concurrency} --pool prefork)",
                      bare.rate, "/s", detail=f"{bare.describe()}; CPU {bare.cpu.describe()}"))
    ratio = None if ts.rate is None or bare.rate is None else 100 * ts.rate / bare.rate
    report.add(Figure("2", "taskservice / bare Celery", ratio, "%", target="≥ 40 %",
                      met=None if ratio is None else ratio >= 40))


def report_drain(report: Report, ts: E2ERun, bare: E2ERun, concurrency: int) -> None:
    report.add(Figure("2", f"taskservice drain of a queued backlog/s (-c {concurrency})", ts.rate, "/s",
                      detail=f"{ts.describe()}; {ts.rerung} re-rung by the reaper; CPU {ts.cpu.describe()}"))
    report.add(Figure("2", f"bare Celery drain of a queued backlog/s (-c {concurrency})", bare.rate, "/s",
                      detail=f"{bare.describe()}; CPU {bare.cpu.describe()}"))
    ratio = None if ts.rate is None or bare.rate is None else 100 * ts.rate / bare.rate
    report.add(Figure("2", "taskservice / bare Celery, drain (worker side only)", ratio, "%"))


def report_cold(report: Report, cold: E2ERun, warm: E2ERun, concurrency: int) -> None:
    """The same run with a fresh fork per attempt (executor_max_attempts=0, how every attempt ran before warm
    executors), for a before/after on the same machine at the same moment."""
    report.add(Figure("2", f"taskservice end-to-end no-op/s, fork per attempt (-c {concurrency}, "
                           "--executor-max-attempts 0)", cold.rate, "/s",
                      detail=f"{cold.describe()}; CPU {cold.cpu.describe()}"))
    if cold.rate and warm.rate:
        report.add(Figure("2", "warm executors / fork per attempt", warm.rate / cold.rate, "x"))


def report_memory(report: Report, label: str, worker: Launched, concurrency: int) -> None:
    """Resident memory of a worker per pool slot: the pool process and what it forked (a taskservice slot's
    zygote and warm executor), RSS (shared pages counted in each process) and PSS (shared pages split)."""
    try:
        main = psutil.Process(worker.pid)
        slots = main.children()
        per_slot = [[slot, *slot.children(recursive=True)] for slot in slots]
        rss = [sum(p.memory_info().rss for p in group) for group in per_slot]
        pss = [sum(p.memory_full_info().pss for p in group) for group in per_slot]
        main_rss = main.memory_info().rss
    except psutil.Error as exc:
        report.note(f"[2] {label} memory not measured: {exc}")
        return
    mib = 1024 * 1024
    shape = ", ".join(f"{len(group)} processes" for group in per_slot)
    report.add(Figure("2", f"{label} RSS per slot (-c {concurrency})", sum(rss) / max(len(rss), 1) / mib, "MiB",
                      detail=(f"{len(slots)} slots ({shape}); PSS per slot {sum(pss) / max(len(pss), 1) / mib:.0f} "
                              f"MiB; main process RSS {main_rss / mib:.0f} MiB")))


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
