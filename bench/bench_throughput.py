"""Submission throughput with auth on (issue 14), before and after, in one run on Postgres + RabbitMQ.

    .venv/bin/python bench/bench_throughput.py [--quick] [--before DIR]

For each tree (`--before DIR`, e.g. a git worktree of main, then this one), on a database of its own:
1. REST submissions/s: `taskservice api --workers 4` with auth on and a real admin token, wrk (1 thread, 8
   connections) POSTing `{}` for a fixed time after a warm-up, counted as rows the ledger gained. This tree is
   measured with each gunicorn worker class (sync, gthread); the before tree has only sync.
2. Bulk submission invocations/s (the plain alternative is row 1 of the same run): 4 client threads POST batches of
   1,000 `{"payload": {}}` items to …/invocations:batch back to back, counted in the ledger; beside it, for this
   tree only, `Submitter.submit_many` in the bench process without HTTP.

No worker runs: only submission is measured. Nothing is asserted; results go to bench/results/<run id>/.
"""
from __future__ import annotations

import argparse
import json
import sys
import threading
import time
from pathlib import Path

import requests

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import machine  # noqa: E402
from bench.procs import BenchError, Launched, wait_for_http  # noqa: E402
from bench.rig import FUNCTION, NOOP_HANDLER, REPO, Endpoints, Rig, RunNames, free_port, venv_tool  # noqa: E402
from bench.submission_phase import find_wrk, parse_wrk  # noqa: E402
from taskservice.db import make_engine  # noqa: E402
from taskservice.ledger.tokens import TokenStore  # noqa: E402
from taskservice.submission import BatchItem  # noqa: E402

WRK_SCRIPT = REPO / "bench" / "wrk_submit_auth.lua"
BATCH = 1000


def start_api(rig: Rig, workers: int, worker_class: str | None) -> Launched:
    extra = {} if worker_class is None else {"TASKSERVICE_API_WORKER_CLASS": worker_class}
    port = free_port()
    api = rig.procs.start(f"api-{worker_class or 'default'}", [venv_tool("taskservice"), "api", "--port", str(port),
                                                               "--workers", str(workers)], extra_env=extra,
                          watched=True)
    rig.api_url = f"http://127.0.0.1:{port}"
    wait_for_http(f"{rig.api_url}/healthz", api, rig.procs)
    return api


def wrk(rig: Rig, name: str, seconds: float, token: str) -> tuple[float, str]:
    url = f"{rig.api_url}/v1/functions/{FUNCTION}/invocations"
    before_rows = rig.probe.count()
    launched = rig.procs.start(name, [find_wrk(), "-t1", "-c8", f"-d{max(1, round(seconds))}s", "--latency",
                                      "--timeout", "10s", "-s", str(WRK_SCRIPT), url], extra_env={"BENCH_TOKEN": token})
    usage = rig.procs.wait_with_rusage(launched)
    result = parse_wrk(launched.log_path.read_text(), usage.ru_utime + usage.ru_stime)
    accepted = rig.probe.count() - before_rows
    detail = (f"{accepted} accepted in {result.duration_s:.1f} s, {result.non_2xx} non-2xx, HTTP p50 "
              f"{result.p50_ms} ms p99 {result.p99_ms} ms")
    return accepted / result.duration_s, detail


def bulk(rig: Rig, seconds: float, token: str, clients: int = 4) -> tuple[float, str]:
    body = json.dumps({"items": [{"payload": {}}] * BATCH}).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    url = f"{rig.api_url}/v1/functions/{FUNCTION}/invocations:batch"
    stop = time.monotonic() + seconds
    errors: list[str] = []

    def client() -> None:
        with requests.Session() as session:
            while time.monotonic() < stop:
                answer = session.post(url, data=body, headers=headers, timeout=60)
                if answer.status_code != 200 or answer.json()["accepted"] != BATCH:
                    errors.append(f"{answer.status_code}: {answer.text[:200]}")
                    return

    before_rows = rig.probe.count()
    started = time.monotonic()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.monotonic() - started
    if errors:
        raise BenchError(f"bulk submission failed: {errors[0]}")
    accepted = rig.probe.count() - before_rows
    return accepted / elapsed, f"{accepted} accepted in {elapsed:.1f} s by {clients} clients, batches of {BATCH}"


def in_process_bulk(rig: Rig, seconds: float) -> float:
    services = rig.in_process_services()
    items = [BatchItem({}) for _ in range(BATCH)]
    done, started = 0, time.monotonic()
    while time.monotonic() - started < seconds:
        done += sum(o.status == 202 for o in services.submitter.submit_many(FUNCTION, items))
    return done / (time.monotonic() - started)


def measure_tree(label: str, code: Path, endpoints: Endpoints, results: Path, args: argparse.Namespace
                 ) -> list[tuple[str, float, str]]:
    names = RunNames.fresh("tput")
    (results / label).mkdir(parents=True, exist_ok=True)
    rig = Rig(endpoints, names, results / label)
    rig.procs.env.update({"PYTHONPATH": str(code), "TASKSERVICE_AUTH": "true"})  # that tree's code, auth on
    rig.procs.cwd = code
    rows: list[tuple[str, float, str]] = []
    try:
        rig.setup()
        _, token = TokenStore(make_engine(rig.sqlalchemy_url)).create("bench", "admin")
        classes: list[str | None] = [None] if label == "before" else ["sync", "gthread"]
        for worker_class in classes:
            api = start_api(rig, 4, worker_class)
            answer = requests.put(f"{rig.api_url}/v1/functions/{FUNCTION}", json={"handler": NOOP_HANDLER},
                                  headers={"Authorization": f"Bearer {token}"}, timeout=10)
            if answer.status_code not in (200, 201):
                raise BenchError(f"PUT function answered {answer.status_code}: {answer.text}")
            wrk(rig, "wrk-warmup", args.warmup_s, token)
            snapshot = machine.snapshot(rig.procs.session_labels())
            rate, detail = wrk(rig, f"wrk-{worker_class}", args.seconds, token)
            cpu = machine.breakdown(snapshot, machine.snapshot(rig.procs.session_labels()))
            rows.append((f"{label}: REST submissions/s, auth on, gunicorn 4 x {worker_class or 'sync'}", rate,
                         f"{detail}; CPU {cpu.describe()}"))
            print(rows[-1], flush=True)
            if worker_class in (None, "sync"):
                snapshot = machine.snapshot(rig.procs.session_labels())
                rate, detail = bulk(rig, args.seconds, token)
                cpu = machine.breakdown(snapshot, machine.snapshot(rig.procs.session_labels()))
                rows.append((f"{label}: bulk submission invocations/s (HTTP, auth on)", rate,
                             f"{detail}; CPU {cpu.describe()}"))
                print(rows[-1], flush=True)
            if label == "after" and worker_class == "sync":  # in the bench process: only this tree's code
                rows.append((f"{label}: Submitter.submit_many in-process invocations/s", in_process_bulk(
                    rig, args.seconds), "1 process, no HTTP"))
                print(rows[-1], flush=True)
            rig.procs.stop(api)
    finally:
        rig.teardown()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--before", type=Path, help="a source tree (git worktree) to measure first, as 'before'")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args()
    args.seconds, args.warmup_s = (4.0, 1.0) if args.quick else (10.0, 2.0)
    endpoints = Endpoints(args.postgres, args.amqp, args.redis)
    results = REPO / "bench" / "results" / f"throughput_{time.strftime('%Y%m%d_%H%M%S')}"
    results.mkdir(parents=True, exist_ok=True)
    print(f"machine: {machine.describe_machine()}; busy before: {machine.background_load():.2f} cores", flush=True)
    rows: list[tuple[str, float, str]] = []
    if args.before is not None:
        rows += measure_tree("before", args.before.resolve(), endpoints, results, args)
    rows += measure_tree("after", REPO, endpoints, results, args)
    print()
    for name, value, detail in rows:
        print(f"{name:<62} {value:>9,.0f}   {detail}")
    (results / "results.json").write_text(json.dumps(rows, indent=1))


if __name__ == "__main__":
    main()
