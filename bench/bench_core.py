"""Core benchmark of taskservice on Postgres + RabbitMQ, against bare Celery on the same broker, in one run.

    .venv/bin/python bench/bench_core.py [--quick]

1. submissions/s through the REST API under gunicorn (wrk, no worker running), beside taskservice's in-process
   submission path and a bare Celery `delay()` loop;
2. end-to-end no-op invocations/s with `taskservice worker -c 2` against a plain `celery worker -c 2 --pool prefork`
   (same N, same broker, same pool size), and their ratio;
3. submit → Running latency p50/p99 at low load (idle worker, submissions via HTTP).

It creates its own database, queues and Redis keys, starts and stops every process it needs (also on error and
Ctrl-C), and writes logs, wrk reports, py-spy profiles and results.json under bench/results/<run id>/. It asserts
nothing about timings: it measures and prints. See bench/README.md for what each figure means.
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

if __package__ in (None, ""):  # run as a script: make `bench` and the service importable from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import e2e_phase, latency_phase, submission_phase  # noqa: E402
from bench.machine import background_load, describe_machine  # noqa: E402
from bench.results import Report, guarded_run, print_report  # noqa: E402
from bench.rig import REPO, Endpoints, Rig, RunNames  # noqa: E402


@dataclass(frozen=True)
class Plan:
    """How long and how big each phase is; --quick shrinks everything to stay well under a minute."""

    wrk_s: float
    wrk_warmup_s: float
    loop_s: float
    n: int
    latency_count: int
    latency_rate: float
    profile: bool
    profile_api_s: float
    profile_n: int

    @classmethod
    def from_args(cls, args: argparse.Namespace) -> Plan:
        if args.quick:
            plan = cls(wrk_s=3, wrk_warmup_s=1, loop_s=1.5, n=500, latency_count=60, latency_rate=20,
                       profile=False, profile_api_s=3, profile_n=250)
        else:
            plan = cls(wrk_s=10, wrk_warmup_s=2, loop_s=3, n=2000, latency_count=200, latency_rate=20,
                       profile=True, profile_api_s=5, profile_n=1000)
        n = args.n or plan.n
        profile = plan.profile if args.profile is None else args.profile
        return cls(**{**plan.__dict__, "n": n, "profile": profile, "profile_n": min(plan.profile_n, n)})


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="small N and short runs (well under a minute)")
    parser.add_argument("--n", type=int, default=0, help="invocations per end-to-end run (default 2000; 500 quick)")
    parser.add_argument("--api-workers", type=int, default=4, help="gunicorn workers (default 4 for 2 cores)")
    parser.add_argument("--connections", type=int, default=8, help="wrk connections (default 8)")
    parser.add_argument("--concurrency", type=int, default=2, help="worker pool size on both sides (default 2)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="py-spy profiles of the API and the worker (default: on, off with --quick)")
    parser.add_argument("--e2e-only", action="store_true", help="phase 2 only (no REST or latency phase)")
    parser.add_argument("--compare-cold", action=argparse.BooleanOptionalAction, default=True,
                        help="also run phase 2 with a fresh fork per attempt (--executor-max-attempts 0)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432", help="server, no database")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    return parser.parse_args(argv)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def step(text: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {text}", flush=True)


def git_revision() -> str:
    """The commit measured, flagged when the service code has uncommitted edits (they are measured too)."""
    try:
        head = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=REPO, capture_output=True, text=True,
                              timeout=10).stdout.strip()
        dirty = subprocess.run(["git", "status", "--porcelain", "--", "taskservice", "workers"], cwd=REPO,
                               capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return f"{head}{' + uncommitted changes in taskservice/ or workers/' if dirty else ''}" if head else "unknown"


def run_header(run_id: str, idle_load: float) -> dict[str, str]:
    """The lines every benchmark prints first: when, which run, which code, on what machine, how busy it was."""
    info = describe_machine()
    return {"date": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "run": run_id, "service": git_revision(),
            "machine": f"{info['nproc']} x {info['cpu']}, {info['ram']} RAM, {info['os']}, Python {info['python']}",
            "load": f"{idle_load:.2f} cores busy with other work before the bench started"}


def run_phases(rig: Rig, plan: Plan, args: argparse.Namespace, report: Report) -> None:
    api = rig.start_api(args.api_workers)
    rig.register_noop()

    if not args.e2e_only:
        step(f"phase 1: REST submissions, wrk {plan.wrk_s:g} s x {args.connections} connections, no worker running")
        submission_phase.measure_rest(rig, report, seconds=plan.wrk_s, warmup_s=plan.wrk_warmup_s,
                                      connections=args.connections, api_workers=args.api_workers)
        if plan.profile:
            step("phase 1: profiled REST pass (py-spy)")
            submission_phase.profile_api(rig, report, api, seconds=plan.profile_api_s, connections=args.connections)
        step("phase 1: in-process Submitter.submit() loop and bare Celery delay() loops")
        submission_phase.measure_in_process(rig, report, seconds=plan.loop_s)
        submission_phase.measure_bare_publish(rig, report, seconds=plan.loop_s)

    rig.reset_ts()
    worker = rig.start_ts_worker(args.concurrency)
    if not args.e2e_only:
        step(f"phase 3: taskservice worker -c {args.concurrency} started; "
             f"{plan.latency_count} submissions via HTTP at {plan.latency_rate:g}/s")
        latency_phase.measure_latency(rig, report, count=plan.latency_count, rate=plan.latency_rate)
    rig.procs.stop(api)

    step(f"phase 2: taskservice end-to-end, N={plan.n}")
    ts_run = e2e_phase.run_taskservice(rig, plan.n)
    e2e_phase.report_memory(report, "taskservice worker", worker, args.concurrency)
    step(f"phase 2: taskservice drain of a backlog of {plan.n}, the worker paused while it is queued")
    ts_drain = e2e_phase.run_taskservice(rig, plan.n, paused_worker=worker)
    if plan.profile:
        step(f"phase 2: profiled taskservice pass (py-spy), N={plan.profile_n}")
        e2e_phase.profile_taskservice(rig, report, worker, plan.profile_n)
    rig.procs.stop(worker)
    cold_run = None
    if args.compare_cold:
        step(f"phase 2: taskservice end-to-end with a fresh fork per attempt, N={plan.n}")
        cold = rig.start_ts_worker(args.concurrency, label="ts-worker-cold",
                                   options=("--executor-max-attempts", "0"))
        cold_run = e2e_phase.run_taskservice(rig, plan.n)
        e2e_phase.report_memory(report, "taskservice worker, fork per attempt,", cold, args.concurrency)
        rig.procs.stop(cold)
    step(f"phase 2: bare Celery end-to-end, N={plan.n}")
    bare_worker = rig.start_bare_worker(args.concurrency)
    bare_run = e2e_phase.run_bare(rig, plan.n)
    e2e_phase.report_memory(report, "bare Celery worker", bare_worker, args.concurrency)
    step(f"phase 2: bare Celery drain of a backlog of {plan.n}, the worker paused while it is queued")
    bare_drain = e2e_phase.run_bare(rig, plan.n, paused_worker=bare_worker)
    rig.procs.stop(bare_worker)
    e2e_phase.report_pair(report, ts_run, bare_run, args.concurrency)
    e2e_phase.report_drain(report, ts_drain, bare_drain, args.concurrency)
    if cold_run is not None:
        e2e_phase.report_cold(report, cold_run, ts_run, args.concurrency)


def header(rig: Rig, args: argparse.Namespace, idle_load: float) -> dict[str, str]:
    fields = run_header(rig.names.run_id, idle_load)
    try:
        probe = rig.probe
        fields["postgres"] = (f"{probe.server_version()} (synchronous_commit={probe.setting('synchronous_commit')}, "
                              f"shared_buffers={probe.setting('shared_buffers')})")
        fields["broker"] = rig.broker.server_version()
    except Exception as exc:  # header details must not hide the real error
        fields["servers"] = f"unavailable: {exc}"
    fields["setup"] = (f"gunicorn {args.api_workers} sync workers; wrk 1 thread x {args.connections} connections; "
                       f"worker pools -c {args.concurrency} prefork on both sides")
    return fields


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    plan = Plan.from_args(args)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    submission_phase.find_wrk()  # fail before creating anything
    endpoints = Endpoints(postgres=args.postgres, amqp=args.amqp, redis=args.redis)
    report = Report()
    names = RunNames.fresh()
    results_dir = REPO / "bench" / "results" / names.run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    rig = Rig(endpoints, names, results_dir)
    info: dict[str, str] = {}

    def body() -> None:
        step(f"setup: database {names.database}, queues bench.{names.run_id}.*, results in {results_dir}")
        idle_load = background_load()
        rig.setup()
        info.update(header(rig, args, idle_load))
        run_phases(rig, plan, args, report)

    def teardown() -> None:
        step("teardown: stopping processes, dropping the database and queues")
        rig.teardown()

    status = guarded_run(body, teardown)
    print_report("taskservice core benchmark (Postgres + RabbitMQ)", info, report, rig.results_dir,
                 artifacts="logs, wrk reports, profiles")
    return status


if __name__ == "__main__":
    sys.exit(main())
