"""Phase 3: submit → Running latency at low load, the delay a caller sees before an idle worker picks work up.

Invocations go in through the REST API at a steady, low rate (one at a time, so no queueing anywhere) while the worker
is idle. The figure is `started_at - created_at` from the ledger: from the moment the API stamped the invocation,
through its ledger commit, the confirmed publish, RabbitMQ delivery and the worker's claim transaction.
"""
from __future__ import annotations

import time

import requests

from bench.procs import BenchError
from bench.results import Figure, Report, percentile
from bench.rig import FUNCTION, Rig


def _submit_paced(rig: Rig, count: int, rate: float) -> list[float]:
    """POST `count` invocations at `rate` per second on a fixed schedule; returns HTTP round trips in ms."""
    url = f"{rig.api_url}/v1/functions/{FUNCTION}/invocations"
    round_trips: list[float] = []
    start = time.monotonic()
    with requests.Session() as session:
        for i in range(count):
            delay = start + i / rate - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            sent = time.perf_counter()
            response = session.post(url, json={}, timeout=10)
            round_trips.append((time.perf_counter() - sent) * 1000)
            if response.status_code != 202:
                raise BenchError(f"submission answered {response.status_code}: {response.text[:300]}")
    return round_trips


def measure_latency(rig: Rig, report: Report, *, count: int, rate: float) -> None:
    rig.reset_ts()
    round_trips = _submit_paced(rig, count, rate)
    started = rig.probe.wait_until("started_at IS NOT NULL", count, timeout_s=30, check=rig.procs.check)
    rig.probe.wait_until("finished_at IS NOT NULL", count, timeout_s=30, check=rig.procs.check)
    to_running = rig.probe.latencies_ms("started_at")
    to_done = rig.probe.latencies_ms("finished_at")
    p50, p99 = percentile(to_running, 50), percentile(to_running, 99)
    report.add(Figure(
        "3", f"submit → Running p50 ({count} via HTTP at {rate:g}/s, idle worker)", p50, "ms",
        detail=(f"p99 {_fmt(p99)} ms, max {_fmt(max(to_running, default=None))} ms over {started}/{count} started; "
                f"submit → Succeeded p50 {_fmt(percentile(to_done, 50))} ms, p99 {_fmt(percentile(to_done, 99))} ms; "
                f"HTTP round trip p50 {_fmt(percentile(round_trips, 50))} ms, "
                f"p99 {_fmt(percentile(round_trips, 99))} ms"),
        target="< 25 ms", met=None if p50 is None else p50 < 25))
    report.add(Figure("3", "submit → Running p99", p99, "ms"))


def _fmt(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1f}"
