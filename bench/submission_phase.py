"""Phase 1: how fast invocations can be submitted, with no worker running so only submission is measured.

The REST figure is taken with wrk (a C event loop: a few percent of one core at these rates) against `taskservice api`
under gunicorn, and counted in the ledger rather than trusted from the load generator. Beside it, in the same run:
taskservice's submission path without HTTP, and a bare Celery `delay()` loop (the plain alternative), once with
Celery's defaults and once with publisher confirms as taskservice's dispatcher uses them.
"""
from __future__ import annotations

import re
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass

import psutil

from bench import machine
from bench.procs import BenchError, Launched
from bench.profiling import find_py_spy, start_recording, stop_recording, summarise
from bench.results import Figure, Report
from bench.rig import FUNCTION, REPO, Rig

WRK_SCRIPT = REPO / "bench" / "wrk_submit.lua"
_UNITS = {"us": 1e-3, "ms": 1.0, "s": 1e3, "m": 60e3}


@dataclass(frozen=True)
class WrkResult:
    requests: int
    duration_s: float
    non_2xx: int
    socket_errors: int
    p50_ms: float | None
    p99_ms: float | None
    cpu_s: float  # wrk's own user+system time

    @property
    def rate(self) -> float:
        return self.requests / self.duration_s if self.duration_s else 0.0


def find_wrk() -> str:
    wrk = shutil.which("wrk")
    if wrk is None:
        raise BenchError("wrk is not installed: `apt-get install -y wrk` (Debian) and run the bench again")
    return wrk


def _ms(number: str, unit: str) -> float:
    return float(number) * _UNITS[unit]


def parse_wrk(text: str, cpu_s: float) -> WrkResult:
    """Pull the counts and latency percentiles out of wrk's --latency report."""
    total = re.search(r"(\d+) requests in ([\d.]+)(us|ms|s|m)", text)
    if total is None:
        raise BenchError(f"could not read wrk's report:\n{text}")
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", text)
    errors = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    percentiles = {int(p): _ms(n, u) for p, n, u in re.findall(r"^\s+(\d+)%\s+([\d.]+)(us|ms|s|m)\s*$", text, re.M)}
    return WrkResult(requests=int(total.group(1)), duration_s=_ms(total.group(2), total.group(3)) / 1e3,
                     non_2xx=int(non_2xx.group(1)) if non_2xx else 0,
                     socket_errors=sum(int(g) for g in errors.groups()) if errors else 0,
                     p50_ms=percentiles.get(50), p99_ms=percentiles.get(99), cpu_s=cpu_s)


def run_wrk(rig: Rig, name: str, seconds: float, connections: int) -> WrkResult:
    """One wrk run against the submission endpoint; blocks for `seconds`."""
    url = f"{rig.api_url}/v1/functions/{FUNCTION}/invocations"
    argv = [find_wrk(), "-t1", f"-c{connections}", f"-d{max(1, round(seconds))}s", "--latency", "--timeout", "10s",
            "-s", str(WRK_SCRIPT), url]
    launched = rig.procs.start(name, argv)
    usage = rig.procs.wait_with_rusage(launched)
    if launched.popen.returncode != 0:
        raise BenchError(f"wrk exited with {launched.popen.returncode}:\n{launched.log_tail()}")
    return parse_wrk(launched.log_path.read_text(), usage.ru_utime + usage.ru_stime)


def measure_rest(rig: Rig, report: Report, *, seconds: float, warmup_s: float, connections: int,
                 api_workers: int) -> None:
    """Submissions/s through gunicorn, counted as new ledger rows over wrk's measured window."""
    run_wrk(rig, "wrk-warmup", warmup_s, connections)  # every gunicorn worker opens its DB pool and broker channel
    before_rows = rig.probe.count()
    before = machine.snapshot(rig.procs.session_labels())
    result = run_wrk(rig, "wrk", seconds, connections)
    after = machine.snapshot(rig.procs.session_labels())
    accepted = rig.probe.count() - before_rows
    cpu = machine.breakdown(before, after, {"wrk": result.cpu_s})
    rate = accepted / result.duration_s
    latency = f"HTTP p50 {result.p50_ms:.1f} ms, p99 {result.p99_ms:.1f} ms" if result.p50_ms and result.p99_ms else ""
    report.add(Figure(
        "1", f"REST submissions/s (gunicorn {api_workers} sync workers, wrk {connections} conns)", rate, "/s",
        detail=(f"{accepted} accepted in the ledger in {result.duration_s:.1f} s; wrk saw {result.rate:.0f} req/s, "
                f"{result.non_2xx} non-2xx, {result.socket_errors} socket errors; {latency}; "
                f"wrk used {100 * result.cpu_s / result.duration_s:.0f}% of one core"),
        target="≥ 1,000 /s", met=rate >= 1000))
    report.note(f"[1] CPU during the REST run: {cpu.describe()}")


def _loop_rate(call: Callable[[], object], seconds: float) -> tuple[int, float]:
    """Call `call` back to back for about `seconds`; (calls, calls per second)."""
    call()  # connect outside the timed window
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while True:
        for _ in range(20):
            call()
        count += 20
        if time.perf_counter() >= deadline:
            return count, count / (time.perf_counter() - start)


def measure_in_process(rig: Rig, report: Report, *, seconds: float) -> None:
    """taskservice's submission path with HTTP taken away: what the ledger insert + confirmed publish cost."""
    submitter = rig.in_process_services().submitter
    before = machine.snapshot(rig.procs.session_labels())
    count, rate = _loop_rate(lambda: submitter.submit(FUNCTION, {}), seconds)
    cpu = machine.breakdown(before, machine.snapshot(rig.procs.session_labels()))
    report.add(Figure("1", "in-process Submitter.submit() loop (1 process, no HTTP)", rate, "/s",
                      detail=f"{count} submissions; CPU {cpu.describe()}"))


def measure_bare_publish(rig: Rig, report: Report, *, seconds: float) -> None:
    """The plain alternative's publish rate: one process calling `delay()` on a no-op task, nobody consuming."""
    from bench.bare_celery_app import NOOP_TASK, make_app

    for confirm, label in ((False, "bare Celery delay() publishes/s (1 process, Celery defaults)"),
                           (True, "bare Celery delay() publishes/s, confirm_publish=True (as taskservice)")):
        task = make_app(rig.endpoints.amqp, rig.names.publish_queue, confirm_publish=confirm).tasks[NOOP_TASK]
        count, rate = _loop_rate(task.delay, seconds)
        report.add(Figure("1", label, rate, "/s", detail=f"{count} messages to {rig.names.publish_queue}"))
        rig.broker.purge(rig.names.publish_queue)


def profile_api(rig: Rig, report: Report, api: Launched, *, seconds: float, connections: int) -> None:
    """A separate wrk run with py-spy on one gunicorn worker (they all do the same work), to say what bounds the
    REST figure. Not the measured run: sampling costs a little CPU on a machine with none to spare."""
    py_spy = find_py_spy()
    workers = psutil.Process(api.pid).children()
    if py_spy is None or not workers:
        report.note("[1] API profile skipped: " + ("py-spy not installed" if py_spy is None else "no gunicorn worker"))
        return
    recordings = [start_recording(rig.procs, py_spy, workers[0].pid, "api-worker", rig.results_dir, mode=mode)
                  for mode in ("wall", "cpu")]
    time.sleep(1.0)
    try:
        result = run_wrk(rig, "wrk-profiled", seconds, connections)
    finally:
        for recording in recordings:
            stop_recording(rig.procs, recording)
    report.note(f"[1] profiled REST pass (py-spy on 1 of {len(workers)} gunicorn workers): {result.rate:.0f} req/s")
    for recording in recordings:
        report.note(f"[1] profile ({recording.output.name}): " + "\n".join(summarise(recording)))
