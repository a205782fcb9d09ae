"""Stop latency on Postgres + RabbitMQ: taskservice's durable stop against Celery's revoke(terminate=True), in one run.

    .venv/bin/python bench/bench_stop.py [--n 40] [--quick]

Each sample: a running invocation whose handler has started a child process (`sleep`, standing in for ffmpeg); the
bench asks for a stop and times (a) the request's round trip, (b) request → ledger status Stopped, (c) request → the
handler and its child both gone. The plain alternative is a bare Celery worker (same broker, same pool size) and
`app.control.revoke(id, terminate=True)`: a broadcast that kills the pool process; the bench times (c) for it and
counts the child processes it leaves behind (then kills them itself). A stop of a waiting invocation is timed too.
Nothing is asserted: figures are printed and saved under bench/results/<run id>/.
"""
from __future__ import annotations

import argparse
import signal
import sys
import time
from pathlib import Path
from types import FrameType

import psutil
import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bare_celery_app import HANG_TASK, make_app  # noqa: E402
from bench.bench_core import run_header, step  # noqa: E402
from bench.machine import background_load  # noqa: E402
from bench.procs import BenchError, Launched  # noqa: E402
from bench.results import Figure, Report, guarded_run, percentile, print_report  # noqa: E402
from bench.rig import REPO, Endpoints, Rig, RunNames  # noqa: E402

HANG = "hang"


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def wait_for_pids(path: Path, timeout_s: float = 30.0) -> list[int]:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if path.exists():
            return [int(p) for p in path.read_text().split()]
        time.sleep(0.005)
    raise BenchError(f"the handler did not start within {timeout_s:g}s ({path} missing)")


def alive(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def wait_gone(pids: list[int], timeout_s: float) -> float | None:
    """Seconds until every pid has exited (zombies count as gone), None if one outlived the timeout."""
    start = time.perf_counter()
    while time.perf_counter() - start < timeout_s:
        if not any(alive(p) for p in pids):
            return time.perf_counter() - start
        time.sleep(0.002)
    return None


def measure_taskservice(rig: Rig, report: Report, n: int, work: Path, worker: Launched) -> None:
    services = rig.in_process_services()
    stop_rtt, to_stopped, to_gone = [], [], []
    with requests.Session() as http:
        for i in range(n):
            pid_file = work / f"ts-{i}.pids"
            inv = services.submitter.submit(HANG, {"pid_file": str(pid_file)}, invocation_id=f"stop_{i}")
            pids = wait_for_pids(pid_file)
            sent = time.perf_counter()
            answer = http.post(f"{rig.api_url}/v1/functions/{HANG}/invocations/{inv.invocation_id}/stop", timeout=10)
            stop_rtt.append((time.perf_counter() - sent) * 1000)
            if answer.status_code != 202:
                raise BenchError(f"stop answered {answer.status_code}: {answer.text[:300]}")
            gone_s: float | None = None
            stopped_s: float | None = None
            while time.perf_counter() - sent < 15 and (gone_s is None or stopped_s is None):
                current = services.ledger.get_by_pk(inv.pk)
                if stopped_s is None and current is not None and current.status.value == "Stopped":
                    stopped_s = time.perf_counter() - sent
                if gone_s is None and not any(alive(p) for p in pids):
                    gone_s = time.perf_counter() - sent
                time.sleep(0.005)
            if stopped_s is None or gone_s is None:
                raise BenchError(f"invocation stop_{i} was not Stopped with its processes gone within 15 s")
            to_stopped.append(stopped_s * 1000)
            to_gone.append(gone_s * 1000)
    _add(report, "1", "taskservice: stop request → Stopped in the ledger", to_stopped, target="p95 < 1,000 ms")
    _add(report, "1", "taskservice: stop request → handler + child process gone", to_gone, target="p95 < 1,000 ms")
    _add(report, "1", "taskservice: stop request round trip (running → Stopping)", stop_rtt)

    waiting_rtt = []
    rig.procs.stop(worker)  # no worker: invocations stay Enqueued until stopped
    with requests.Session() as http:
        for i in range(n):
            inv = services.submitter.submit(HANG, {"pid_file": str(work / "never")}, invocation_id=f"waiting_{i}")
            sent = time.perf_counter()
            answer = http.post(f"{rig.api_url}/v1/functions/{HANG}/invocations/{inv.invocation_id}/stop", timeout=10)
            waiting_rtt.append((time.perf_counter() - sent) * 1000)
            if answer.status_code != 202 or answer.json()["status"] != "Stopped":
                raise BenchError(f"stop of a waiting invocation answered {answer.status_code}: {answer.text[:300]}")
    _add(report, "2", "taskservice: stop of an Enqueued invocation, no worker running (→ Stopped)", waiting_rtt)


def measure_bare(rig: Rig, report: Report, n: int, work: Path) -> None:
    app = make_app(rig.endpoints.amqp, rig.names.bare_queue)
    to_pool_gone, to_all_gone, orphans = [], [], 0
    for i in range(n):
        pid_file = work / f"bare-{i}.pids"
        result = app.tasks[HANG_TASK].delay(str(pid_file))
        pool_pid, child_pid = wait_for_pids(pid_file)
        sent = time.perf_counter()
        app.control.revoke(result.id, terminate=True, signal="SIGTERM")
        pool_gone = wait_gone([pool_pid], timeout_s=15)
        if pool_gone is None:
            raise BenchError(f"bare Celery did not terminate task {i} within 15 s")
        to_pool_gone.append(pool_gone * 1000)
        child_gone = wait_gone([child_pid], timeout_s=0.5)
        if child_gone is None:
            orphans += 1
            psutil.Process(child_pid).kill()
        else:
            to_all_gone.append((time.perf_counter() - sent) * 1000)
    _add(report, "3", "bare Celery: revoke(terminate=True) → pool process gone", to_pool_gone)
    report.add(Figure("3", "bare Celery: child processes left running after the revoke", orphans, f"of {n}",
                      detail="revoke signals the pool process only; its children are orphaned, still running "
                             "(killed by the bench afterwards)"))
    app.close()


def _add(report: Report, phase: str, label: str, values_ms: list[float], target: str = "") -> None:
    p50, p95 = percentile(values_ms, 50), percentile(values_ms, 95)
    met = None if not target or p95 is None else p95 < 1000
    report.add(Figure(phase, f"{label} p50", p50, "ms",
                      detail=f"p95 {p95:.1f} ms, max {max(values_ms):.1f} ms over {len(values_ms)} stops"
                      if p95 is not None else "", target=target, met=met))


def register(rig: Rig) -> None:
    response = requests.put(f"{rig.api_url}/v1/functions/{HANG}",
                            json={"handler": "bench.stop_handlers:handler", "timeout_s": 600, "max_retries": 0},
                            timeout=10)
    if response.status_code not in (200, 201):
        raise BenchError(f"PUT /v1/functions/{HANG} answered {response.status_code}: {response.text}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n", type=int, default=40, help="stops per measurement (default 40; 10 with --quick)")
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    n = 10 if args.quick else args.n
    signal.signal(signal.SIGTERM, _raise_interrupt)
    names = RunNames.fresh("stop")
    results_dir = REPO / "bench" / "results" / names.run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    work = results_dir / "pids"
    work.mkdir()
    rig = Rig(Endpoints(postgres=args.postgres, amqp=args.amqp, redis=args.redis), names, results_dir)
    report = Report()
    info: dict[str, str] = {}

    def body() -> None:
        step(f"setup: database {names.database}, results in {results_dir}")
        idle = background_load()
        rig.setup()
        info.update({**run_header(names.run_id, idle), "postgres": rig.probe.server_version(),
                     "broker": rig.broker.server_version(),
                     "setup": f"gunicorn 2 workers; worker pools -c {args.concurrency} prefork on both sides"})
        rig.start_api(2)
        rig.register_noop()
        register(rig)
        ts_worker = rig.start_ts_worker(args.concurrency)
        step(f"taskservice: {n} stops of a running handler with a child process, then {n} of waiting invocations")
        measure_taskservice(rig, report, n, work, ts_worker)
        step(f"bare Celery: {n} revoke(terminate=True) of a running task with a child process")
        worker = rig.start_bare_worker(args.concurrency)
        measure_bare(rig, report, n, work)
        rig.procs.stop(worker)

    status = guarded_run(body, rig.teardown)
    print_report("stop latency (Postgres + RabbitMQ)", info, report, results_dir, artifacts="logs")
    return status


if __name__ == "__main__":
    sys.exit(main())
