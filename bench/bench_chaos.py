"""Chaos on the production stack (Postgres + RabbitMQ): the full-size version of the suite's chaos test, and the
re-ring count of a queued backlog with no faults, in one run.

    .venv/bin/python bench/bench_chaos.py [--quick] [--n 2000] [--rate 50] [--rering-n 10000]

1. Chaos: N invocations of a no-op that marks each execution in a file (bench/chaos_handlers.py), on_success
   `queue:<unique>` with a relay running, on 2 workers x 2 slots (lease 6 s, heartbeat 1 s, reaper every 0.5 s).
   While one thread submits them through the in-process Submitter at a steady rate (an outage error is retried with
   the same invocation id, as the CLI does), the bench SIGKILLs a worker's process group every ~2 s and starts it
   again, restarts Postgres (`pg_ctlcluster … restart -m fast`) once and RabbitMQ (`rabbitmqctl stop_app` /
   `start_app`) once. Then it waits, and counts what was lost, stuck, doubled and how long recovery took.
2. Re-rings with no faults: M invocations queued with no worker consuming, the reaper's silent-doorbell pass run
   over and over (target: nothing rung again); then 2 workers drain the backlog with a reaper beside them, and the
   same drain is timed for M bare Celery no-op tasks on the same broker (the plain alternative).

It stops and restarts the machine's own Postgres and RabbitMQ, and always brings them back. It creates its own
database and queues and drops them at the end, also on error, Ctrl-C or SIGTERM. Nothing is asserted: figures are
printed and saved under bench/results/<run id>/. See bench/README.md, section "Chaos".
"""
from __future__ import annotations

import argparse
import collections
import contextlib
import os
import random
import re
import signal
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import psycopg

if __package__ in (None, ""):  # run as a script: make `bench` and the service importable from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bare_celery_app import NOOP_TASK, make_app, read_completion, reset_completion  # noqa: E402
from bench.bench_core import run_header, step  # noqa: E402
from bench.chaos_faults import ServiceFaults  # noqa: E402
from bench.machine import background_load, breakdown, snapshot  # noqa: E402
from bench.procs import BenchError, Launched  # noqa: E402
from bench.results import Figure, Report, guarded_run, percentile, print_report  # noqa: E402
from bench.rig import NOOP_HANDLER, REPO, Endpoints, Rig, RunNames, venv_tool  # noqa: E402
from taskservice.config import Settings  # noqa: E402
from taskservice.db import is_outage  # noqa: E402
from taskservice.errors import DuplicateInvocation  # noqa: E402
from taskservice.services import Services  # noqa: E402
from workers.reaper import SILENT_GRACE_S, Reaper  # noqa: E402

CHAOS_FUNCTION = "chaos"
CHAOS_HANDLER = "bench.chaos_handlers:counted"
BACKLOG_FUNCTION = "noop"
WORKERS = 2
SLOTS = 2
STUCK_AFTER_S = 30.0  # "stuck": not Succeeded this long after the last fault (the suite's bound)
MAX_WAIT_S = 600.0  # after the last fault, the longest the bench waits for the backlog
# The chaos test's settings (tests/chaos): lease 6 s, heartbeat 1 s, reaper every 0.5 s, quick retries; the relay
# polls often and backs off briefly. drain_s is short so that stopping a worker between phases is brisk.
WORKER_SETTINGS = {"lease_s": 6.0, "heartbeat_s": 1.0, "reaper_interval_s": 0.5, "retry_base_s": 0.2,
                   "retry_max_s": 1.0, "drain_s": 2.0}
RELAY_SETTINGS = {"relay_lease_s": 3.0, "relay_idle_s": 0.05, "relay_backoff_base_s": 0.2, "relay_backoff_max_s": 1.0}
RERUNG_LINE = re.compile(r"(\d+) silent doorbell\(s\) rung again")
TERMINAL_SQL = "('Succeeded', 'Failed', 'Stopped', 'Expired', 'Invalid')"


def _env(settings: dict[str, float]) -> dict[str, str]:
    return {f"TASKSERVICE_{name.upper()}": str(value) for name, value in settings.items()}


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


@dataclass(frozen=True)
class Plan:
    n: int
    rate: float
    handler_s: float
    kill_every_s: float
    settle_s: float  # how long after the last fault an invocation may still succeed before it counts as lost
    rering_n: int
    seed: int

    @property
    def window_s(self) -> float:
        return self.n / self.rate


@dataclass
class Fault:
    what: str
    start: float  # epoch seconds (the ledger's clock is this machine's)
    end: float  # when the service answered again (a kill: the same instant; the worker is restarted after it)


@dataclass
class ChaosLog:
    """What the chaos phase saw as it went; the figures come from this and the ledger."""

    faults: list[Fault] = field(default_factory=list)
    accepted: dict[str, float] = field(default_factory=dict)  # invocation id → epoch of the accepted submit
    outage_retries: collections.Counter[str] = field(default_factory=collections.Counter)
    rejected: collections.Counter[str] = field(default_factory=collections.Counter)  # non-outage errors, not retried
    duplicate_answers: int = 0  # a retry answered "already exists": the earlier try had been accepted after all
    longest_submit_s: float = 0.0  # the longest one submission took, outage retries included
    submit_error: BaseException | None = None
    outage_spans: list[tuple[float, float]] = field(default_factory=list)  # first outage error → next accepted
    worker_ready_s: list[float] = field(default_factory=list)  # restart → "reaper started"
    died_by_themselves: list[str] = field(default_factory=list)
    backlog: list[tuple[float, int]] = field(default_factory=list)  # (epoch, invocations not yet terminal)
    pg_started: str = ""  # Postgres's start time after our own restart: a later one means someone else restarted it


# --- ledger reads -------------------------------------------------------------------------------------------------
class Ledger:
    """Plain SQL on the run's database, a fresh connection per call: Postgres is restarted under us, and a
    connection opened before the restart is dead afterwards."""

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo

    def rows(self, sql: str, *params: object) -> list[tuple[Any, ...]]:
        with psycopg.connect(self.conninfo, autocommit=True, connect_timeout=5) as conn:
            return list(conn.execute(sql, params).fetchall())

    def scalar(self, sql: str, *params: object) -> int:
        rows = self.rows(sql, *params)
        return int(rows[0][0] or 0) if rows else 0

    def poll(self, sql: str, *params: object) -> int | None:
        """`scalar`, or None while the database is unreachable (another engineer may restart it too)."""
        try:
            return self.scalar(sql, *params)
        except psycopg.OperationalError:
            return None

    def count(self, function: str, status: str) -> int:
        """Invocations of `function` in `status`; waits out an outage."""
        while True:
            value = self.poll("SELECT count(*) FROM invocations WHERE function = %s AND status = %s", function, status)
            if value is not None:
                return value
            time.sleep(0.5)


# --- processes ----------------------------------------------------------------------------------------------------
@dataclass
class Slot:
    """One of the two worker places: the worker now in it, when it was launched and when it began consuming."""

    worker: Launched
    launched: float  # monotonic
    ready_at: float | None = None

    def ready(self) -> bool:
        if self.ready_at is None and "reaper started" in self.worker.log_path.read_text(errors="replace"):
            self.ready_at = time.monotonic()
        return self.ready_at is not None


class Fleet:
    """taskservice workers (2 slots each) and the relay, started, killed and restarted by the bench."""

    def __init__(self, rig: Rig, prefix: str) -> None:
        self.rig = rig
        self.prefix = prefix
        self.started = 0

    def launch_worker(self) -> Slot:
        """Start a worker without waiting for it (see `Slot.ready`)."""
        index, self.started = self.started, self.started + 1
        worker = self.rig.procs.start(
            f"{self.prefix}-worker-{index}",
            [venv_tool("taskservice"), "worker", "-c", str(SLOTS), "--loglevel", "INFO", "--name",
             f"{self.prefix}{index}-{self.rig.names.run_id}@%h"], extra_env=_env(WORKER_SETTINGS))
        return Slot(worker, time.monotonic())

    def start_worker(self, timeout_s: float = 60.0) -> Launched:
        """Start a worker and return once its reaper runs (Celery's worker_ready: it consumes)."""
        slot = self.launch_worker()
        while not slot.ready():
            self.rig.procs.ensure_alive(slot.worker)
            if time.monotonic() - slot.launched > timeout_s:
                raise BenchError(f"{slot.worker.name} did not start within {timeout_s:.0f}s:\n"
                                 f"{slot.worker.log_tail()}")
            time.sleep(0.05)
        return slot.worker

    def kill(self, worker: Launched) -> None:
        """SIGKILL the worker's whole process group (main process, pool, handler processes) at once, then reap."""
        with contextlib.suppress(ProcessLookupError):  # already gone: nothing left to kill
            os.killpg(worker.pid, signal.SIGKILL)  # the leader is not reaped yet: the group id is still ours
        self.rig.procs.stop(worker, sig=signal.SIGKILL)

    def start_relay(self) -> Launched:
        relay = self.rig.procs.start(f"{self.prefix}-relay", [venv_tool("taskservice"), "relay", "--loglevel", "INFO"],
                                     extra_env=_env(RELAY_SETTINGS))
        deadline = time.monotonic() + 30
        while "started" not in relay.log_path.read_text(errors="replace"):
            self.rig.procs.ensure_alive(relay)
            if time.monotonic() > deadline:
                raise BenchError(f"the relay did not start within 30s:\n{relay.log_tail()}")
            time.sleep(0.05)
        return relay


def deploy(settings: Settings, results_dir: Path, name: str, **config: Any) -> None:
    """PUT the function through the API's own code (Flask test client): no API process is needed for that."""
    from taskservice import create_app

    client = create_app(settings.merged(auth=False, data_dir=results_dir)).test_client()
    response = client.put(f"/v1/functions/{name}", json=config)
    if response.status_code not in (200, 201):
        raise BenchError(f"PUT /v1/functions/{name} answered {response.status_code}: {response.get_data(True)}")


def _postmaster_start(ledger: Ledger) -> str:
    """When the Postgres server started: it changes with every restart, ours or another engineer's."""
    for _ in range(100):
        try:
            return str(ledger.rows("SELECT pg_postmaster_start_time()")[0][0])
        except psycopg.OperationalError:
            time.sleep(0.1)
    return "unknown"


# --- phase 1: chaos -----------------------------------------------------------------------------------------------
def submit_steadily(services: Services, plan: Plan, marker: Path, log: ChaosLog) -> None:
    """Submit N invocations at `plan.rate`/s; an outage error is retried with the same id every 0.2 s."""
    start = time.monotonic()
    outage_began: float | None = None
    try:
        for n in range(plan.n):
            time.sleep(max(0.0, start + n / plan.rate - time.monotonic()))  # steady; catch up after a stall
            invocation_id = f"chaos_{n}"
            began = time.monotonic()
            while True:
                try:
                    services.submitter.submit(CHAOS_FUNCTION, {"marker": str(marker), "seconds": plan.handler_s,
                                                               "n": n}, invocation_id=invocation_id)
                except DuplicateInvocation:
                    log.duplicate_answers += 1  # an earlier try was accepted after all
                except Exception as exc:
                    if not is_outage(exc):
                        log.rejected[type(exc).__name__] += 1
                        break
                    log.outage_retries[type(exc).__name__] += 1
                    outage_began = outage_began or time.time()
                    time.sleep(0.2)
                    continue
                log.accepted[invocation_id] = time.time()
                if outage_began is not None:
                    log.outage_spans.append((outage_began, log.accepted[invocation_id]))
                    outage_began = None
                break
            log.longest_submit_s = max(log.longest_submit_s, time.monotonic() - began)
    except BaseException as exc:  # the main thread reports it
        log.submit_error = exc


def watch_backlog(ledger: Ledger, log: ChaosLog, stop: threading.Event) -> None:
    """Every 0.2 s: how many chaos invocations are not yet terminal (nothing is sampled while Postgres is down)."""
    while not stop.wait(0.2):
        try:
            backlog = ledger.scalar(f"SELECT count(*) FROM invocations WHERE function = %s AND status NOT IN "
                                    f"{TERMINAL_SQL}", CHAOS_FUNCTION)
        except psycopg.Error:
            continue
        log.backlog.append((time.time(), backlog))


def run_chaos(rig: Rig, plan: Plan, faults: ServiceFaults, results_dir: Path, report: Report) -> None:
    settings = rig.in_process_settings()
    services = rig.in_process_services()
    ledger = Ledger(rig.conninfo)
    records_queue = rig.names.publish_queue  # unique to the run; the rig deletes it at the end
    deploy(settings, results_dir, CHAOS_FUNCTION, handler=CHAOS_HANDLER, max_retries=8, timeout_s=60,
           on_success=f"queue:{records_queue}")
    _declare_record_queue(settings, records_queue)
    marker = results_dir / "executions.txt"
    fleet = Fleet(rig, "chaos")
    log = ChaosLog()
    relay = fleet.start_relay()
    slots = [fleet.launch_worker() for _ in range(WORKERS)]
    for slot in slots:
        while not slot.ready():
            rig.procs.ensure_alive(slot.worker)
            time.sleep(0.05)

    stop_watch = threading.Event()
    watcher = threading.Thread(target=watch_backlog, args=(ledger, log, stop_watch), daemon=True)
    submitter = threading.Thread(target=submit_steadily, args=(services, plan, marker, log), daemon=True)
    step(f"chaos: {plan.n} invocations at {plan.rate:g}/s over {plan.window_s:.0f}s; a worker SIGKILLed every "
         f"~{plan.kill_every_s:g}s, Postgres restarted at +{0.3 * plan.window_s:.0f}s, RabbitMQ at "
         f"+{0.6 * plan.window_s:.0f}s")
    watcher.start()
    submitter.start()
    rng = random.Random(plan.seed)
    started = time.monotonic()
    schedule = {0.3 * plan.window_s: "postgres", 0.6 * plan.window_s: "rabbitmq"}
    next_kill = started + plan.kill_every_s
    pg_started = _postmaster_start(ledger)
    try:
        while time.monotonic() - started < plan.window_s or schedule:
            # A kill every ~2 s on the clock, of a worker that is consuming: the one killed before may still be
            # starting (that takes 2-5 s here), so at times neither worker consumes.
            while time.monotonic() < next_kill or not any(slot.ready() for slot in slots):
                for i, slot in enumerate(slots):  # a worker that died without being killed is a finding, too
                    if not slot.worker.alive():
                        log.died_by_themselves.append(f"{slot.worker.name}: {slot.worker.exit_status()}")
                        rig.procs.stop(slot.worker)
                        slots[i] = fleet.launch_worker()
                time.sleep(0.02)
            next_kill = time.monotonic() + plan.kill_every_s
            victim = rng.choice([i for i, slot in enumerate(slots) if slot.ready()])
            dead = slots[victim]
            fleet.kill(dead.worker)
            if dead.ready_at is not None:
                log.worker_ready_s.append(dead.ready_at - dead.launched)
            now = time.time()
            log.faults.append(Fault(f"worker {victim} SIGKILLed", now, now))
            slots[victim] = fleet.launch_worker()
            for at, service in sorted(schedule.items()):
                if time.monotonic() - started >= at:
                    del schedule[at]
                    begun = time.time()
                    step(f"chaos: {service} restart")
                    if service == "postgres":
                        faults.restart_postgres()
                    else:
                        faults.restart_rabbitmq()
                    log.faults.append(Fault(f"{service} restart", begun, time.time()))
                    if service == "postgres":
                        pg_started = _postmaster_start(ledger)
                    break  # one service fault per kill: the other waits for the next one
    finally:
        faults.ensure_running()
    log.pg_started = pg_started
    for slot in slots:  # both workers consuming again before the settle period
        while not slot.ready() and time.monotonic() - slot.launched < 60:
            time.sleep(0.05)
    workers = [slot.worker for slot in slots]
    last_fault = max(f.end for f in log.faults)
    step(f"chaos: {len(log.faults)} faults done; waiting for the submitter and for every accepted invocation "
         f"(until none has Succeeded for {plan.settle_s:.0f}s)")
    submitter.join(timeout=plan.window_s + 120)
    if log.submit_error is not None:
        raise BenchError(f"the submitter failed: {log.submit_error!r}")
    accepted = set(log.accepted)
    # Wait while the ledger makes progress: until every accepted invocation Succeeded, or no new one did for
    # settle_s, or MAX_WAIT_S after the last fault. What is not Succeeded then counts as lost.
    succeeded, progressed = -1, time.monotonic()
    while time.time() < last_fault + MAX_WAIT_S and time.monotonic() - progressed < plan.settle_s:
        now_succeeded = ledger.count(CHAOS_FUNCTION, "Succeeded")
        if now_succeeded >= len(accepted):
            break
        if now_succeeded > succeeded:
            succeeded, progressed = now_succeeded, time.monotonic()
        time.sleep(0.25)
    if not relay.alive():
        log.died_by_themselves.append(f"{relay.name}: {relay.exit_status()}")
        rig.procs.stop(relay)
        relay = fleet.start_relay()
    outbox_deadline = time.monotonic() + 60
    while ledger.poll("SELECT count(*) FROM destination_deliveries WHERE function = %s AND status = 'pending'",
                      CHAOS_FUNCTION) != 0 and time.monotonic() < outbox_deadline:
        time.sleep(0.25)
    if _postmaster_start(ledger) != log.pg_started:
        report.note("[1] WARNING: Postgres was restarted by someone else during this phase (its start time changed "
                    "after the bench's own restart): the figures include that outage")
    stop_watch.set()
    watcher.join(timeout=5)
    (results_dir / "backlog.csv").write_text("epoch,not_terminal\n" + "".join(f"{t:.2f},{n}\n" for t, n in
                                                                           log.backlog))
    step("chaos: reading the record queue")
    delivered = _drain_records(settings, records_queue)
    for launched in (*workers, relay):
        rig.procs.stop(launched)
    _chaos_figures(report, plan, log, ledger, accepted, last_fault, marker, delivered)


def _declare_record_queue(settings: Settings, name: str) -> None:
    """Declare the durable record queue before the first record, so no record is published before it exists."""
    from kombu import Connection

    from taskservice.broker import broker_options
    from taskservice.destinations.queue import record_queue

    url, options = broker_options(settings)
    with Connection(url, transport_options=options, connect_timeout=5) as conn:
        record_queue(name)(conn.default_channel).declare()


def _drain_records(settings: Settings, name: str, quiet_s: float = 2.0) -> list[dict[str, Any]]:
    """Consume the record queue like a real consumer until it has been quiet for `quiet_s`; every copy counts."""
    from kombu import Connection, Consumer

    from taskservice.broker import broker_options
    from taskservice.destinations.queue import record_queue

    url, options = broker_options(settings)
    got: list[dict[str, Any]] = []

    def on_message(body: Any, message: Any) -> None:
        got.append(body)
        message.ack()

    with Connection(url, transport_options=options, connect_timeout=5) as conn:
        with Consumer(conn.default_channel, queues=[record_queue(name)], callbacks=[on_message], accept=["json"],
                      prefetch_count=500):
            while True:
                try:
                    conn.drain_events(timeout=quiet_s)
                except TimeoutError:
                    return got


def _chaos_figures(report: Report, plan: Plan, log: ChaosLog, ledger: Ledger, accepted: set[str],
                   last_fault: float, marker: Path, delivered: list[dict[str, Any]]) -> None:
    rows = ledger.rows("SELECT invocation_id, request_id, status, attempts, extract(epoch FROM created_at),"
                       " extract(epoch FROM finished_at) FROM invocations WHERE function = %s", CHAOS_FUNCTION)
    by_id = {r[0]: r for r in rows}
    done = {r[0]: float(r[5]) for r in rows if r[2] == "Succeeded" and r[5] is not None}
    lost = sorted(i for i in accepted if i not in done)
    stuck = sorted(i for i in accepted if i not in done or done[i] > last_fault + STUCK_AFTER_S)
    unacknowledged = sorted(set(by_id) - accepted)  # rows the submitter never heard were accepted
    kills = sum(f.what.startswith("worker") for f in log.faults)
    retries = sum(log.outage_retries.values())
    report.add(Figure("1", "accepted", len(accepted), f"of {plan.n}",
                      detail=f"{retries} outage retries with the same id ({dict(log.outage_retries)}), "
                             f"{log.duplicate_answers} answered 'already exists' (an earlier try had been accepted), "
                             f"{sum(log.rejected.values())} rejected by a non-outage error ({dict(log.rejected)}); "
                             f"longest submission incl. retries {log.longest_submit_s:.1f}s; "
                             f"{len(unacknowledged)} ledger rows the submitter never saw accepted"))
    statuses = collections.Counter(by_id[i][2] if i in by_id else "missing" for i in lost)
    report.add(Figure("1", "lost (accepted, never Succeeded)", len(lost),
                      "invocations", detail=f"waited until no invocation had Succeeded for {plan.settle_s:.0f}s"
                                            + (f"; by status {dict(statuses)}: {', '.join(lost[:10])}" if lost else ""),
                      target="0", met=not lost))
    at_last = [n for t, n in log.backlog if t <= last_fault]
    zero_attempts = sum(1 for i in stuck if i in by_id and i in done and int(by_id[i][3]) == 1)
    report.add(Figure("1", f"stuck (not Succeeded {STUCK_AFTER_S:.0f}s after the last fault)", len(stuck),
                      "invocations", detail=f"{at_last[-1] if at_last else '?'} invocations were not yet terminal at "
                                            f"the last fault; {zero_attempts} of the stuck ran only once (queued, "
                                            f"not retried); e.g. {', '.join(stuck[:6])}" if stuck else "",
                      target="0", met=not stuck))

    per_request = ledger.rows("SELECT request_id, count(*) FROM destination_deliveries WHERE function = %s"
                              " AND condition = '' GROUP BY request_id", CHAOS_FUNCTION)
    doubled_records = sum(count - 1 for _, count in per_request if count > 1)
    other_records = ledger.scalar("SELECT count(*) FROM destination_deliveries WHERE function = %s"
                                  " AND condition <> ''", CHAOS_FUNCTION)
    report.add(Figure("1", "duplicate success records (outbox rows per requestId > 1)", doubled_records, "rows",
                      detail=f"{len(per_request)} requestIds with a success record; {other_records} failure records",
                      target="0", met=doubled_records == 0))
    on_queue = collections.Counter(r["requestContext"]["requestId"] for r in delivered)
    succeeded_requests = {by_id[i][1] for i in done}
    missing = len(succeeded_requests - set(on_queue))
    report.add(Figure("1", "duplicate deliveries on the record queue", sum(on_queue.values()) - len(on_queue),
                      "messages", detail=f"{sum(on_queue.values())} messages for {len(on_queue)} requestIds; "
                                         f"{missing} Succeeded invocations had no record on the queue"))

    lines = [line.split() for line in marker.read_text().splitlines()] if marker.exists() else []
    executions = collections.Counter(parts[0] for parts in lines if parts)
    same_attempt = collections.Counter(tuple(parts[:2]) for parts in lines if len(parts) >= 2)
    report.add(Figure("1", "duplicate executions (handler ran more than once)",
                      sum(c - 1 for c in executions.values() if c > 1), "executions",
                      detail=f"{sum(executions.values())} executions of {len(executions)} invocations, "
                             f"{sum(c > 1 for c in executions.values())} invocations ran more than once, "
                             f"{sum(c - 1 for c in same_attempt.values() if c > 1)} repeats of the same attempt "
                             "number; allowed (at-least-once), reported"))
    attempts = collections.Counter(int(r[3]) for r in rows)
    report.add(Figure("1", "max attempts", max(attempts) if attempts else None, "",
                      detail=f"attempts → invocations {dict(sorted(attempts.items()))}; {kills} worker kills",
                      target=f"<= 1 + kills ({1 + kills})", met=bool(attempts) and max(attempts) <= 1 + kills))
    latencies = [(float(r[5]) - float(r[4])) * 1000 for r in rows if r[2] == "Succeeded" and r[5] is not None]
    p50, p99 = percentile(latencies, 50), percentile(latencies, 99)
    report.add(Figure("1", "submit → Succeeded p50 (created_at → finished_at)", p50, "ms",
                      detail=f"p99 {p99:,.0f} ms, max {max(latencies):,.0f} ms" if latencies else ""))
    report.add(Figure("1", "submit → Succeeded p99", p99, "ms"))

    last_done = max(done.values()) if done else None
    all_done = not lost
    report.add(Figure("1", "last fault → every accepted invocation Succeeded",
                      None if not all_done or last_done is None else max(0.0, last_done - last_fault), "s",
                      detail="" if all_done else f"{len(lost)} never did"))
    _recovery_figures(report, log, rows)
    ready = log.worker_ready_s
    if ready:
        report.note(f"[1] a restarted worker took {percentile(ready, 50):.1f}s (p50), {max(ready):.1f}s (max) from "
                    f"launch to consuming, {len(ready)} restarts")
    if log.died_by_themselves:
        report.note("[1] processes that died without being killed (restarted): " + "; ".join(log.died_by_themselves))
    start = log.faults[0].start if log.faults else 0.0
    report.note("[1] faults: " + ", ".join(
        f"{f.what} +{f.start - start:.1f}s" + (f" (the restart command took {f.end - f.start:.1f}s)"
                                              if f.end > f.start else "") for f in log.faults))
    if log.outage_spans:
        report.note("[1] the submitter saw the ledger unreachable: " + ", ".join(
            f"+{a - start:.1f}s for {b - a:.2f}s" for a, b in log.outage_spans))


def _recovery_figures(report: Report, log: ChaosLog, rows: list[tuple[Any, ...]]) -> None:
    """Two per-fault recovery times (bench/README.md, "Chaos", defines them):
    cleared — fault → when every invocation created before the fault had Succeeded (from the ledger);
    backlog — fault → the first sample, after the service is back, with no more invocations in flight than the most
    seen in the second before the fault (from the 0.2 s samples)."""
    created_done = [(float(r[4]), float(r[5]) if r[2] == "Succeeded" and r[5] is not None else None) for r in rows]

    def cleared(fault: Fault) -> float | None:
        before = [finished for created, finished in created_done if created <= fault.start]
        if not before:
            return 0.0
        if any(finished is None for finished in before):
            return None
        return max(0.0, max(f for f in before if f is not None) - fault.start)

    def backlog(fault: Fault) -> float | None:
        earlier = [n for t, n in log.backlog if fault.start - 1.0 <= t < fault.start]
        level = max(earlier) if earlier else 0
        for t, n in log.backlog:
            if t >= fault.end and n <= level:
                return t - fault.start
        return None

    def text(values: list[float | None]) -> str:
        known = [v for v in values if v is not None]
        never = len(values) - len(known)
        if not known:
            return "never"
        shown = f"p50 {percentile(known, 50):.1f}s, max {max(known):.1f}s" if len(known) > 1 else f"{known[0]:.1f}s"
        return shown + (f", {never} never" if never else "")

    kills = [f for f in log.faults if f.what.startswith("worker")]
    for label, group in (("worker SIGKILL", kills),
                         ("Postgres restart", [f for f in log.faults if f.what.startswith("postgres")]),
                         ("RabbitMQ stop_app/start_app", [f for f in log.faults if f.what.startswith("rabbitmq")])):
        if not group:
            continue
        values = [cleared(f) for f in group]
        known = [v for v in values if v is not None]
        outage = (f"; the restart command took {group[0].end - group[0].start:.1f}s" if group[0].end > group[0].start
                  else "")
        report.add(Figure("1", f"recovery after {label}: work before it all Succeeded",
                          max(known) if known and len(known) == len(values) else None, "s",
                          detail=f"cleared {text(values)} over {len(group)} fault(s); backlog back to its "
                                 f"pre-fault level {text([backlog(f) for f in group])}{outage}"))


# --- phase 2: re-rings of a queued backlog, no faults -------------------------------------------------------------
def submit_retrying(services: Services, function: str, invocation_id: str) -> None:
    """Submit once; if another engineer's test takes Postgres away meanwhile, the same id again."""
    while True:
        try:
            services.submitter.submit(function, {}, invocation_id=invocation_id)
            return
        except DuplicateInvocation:
            return
        except Exception as exc:
            if not is_outage(exc):
                raise
            time.sleep(0.2)


def run_rering(rig: Rig, plan: Plan, results_dir: Path, report: Report) -> None:
    n = plan.rering_n
    settings = rig.in_process_settings()
    services = rig.in_process_services()
    ledger = Ledger(rig.conninfo)
    rig.probe.close()  # its connection predates the Postgres restart
    rig.reset_ts()
    deploy(settings, results_dir, BACKLOG_FUNCTION, handler=NOOP_HANDLER)
    retention = float(settings.retention_s)

    step(f"re-rings: {n:,} invocations queued with no worker, a reaper running beside the submitter")
    side = Services.build(settings)  # the reaper thread's own connections
    during = Reaper(side.ledger, side.submitter, interval_s=WORKER_SETTINGS["reaper_interval_s"],
                    retention_s=retention)
    thread = during.start()
    pg_started = _postmaster_start(ledger)
    began = time.monotonic()
    for i in range(n):
        submit_retrying(services, BACKLOG_FUNCTION, f"backlog_{i}")
    submit_s = time.monotonic() - began
    during.stop()
    thread.join(timeout=10)
    depth_before = rig.broker.depth(rig.names.ts_queue)

    step(f"re-rings: the silent-doorbell pass over the queued backlog (grace {SILENT_GRACE_S:g}s)")
    reaper = Reaper(services.ledger, services.submitter, interval_s=0.5, retention_s=retention)
    passes, pass_ms, began = 0, [], time.monotonic()
    while passes < 10 or time.monotonic() - began < SILENT_GRACE_S + 1.0:
        t = time.perf_counter()
        reaper.run_once()
        pass_ms.append((time.perf_counter() - t) * 1000)
        passes += 1
        time.sleep(0.3)
    span = time.monotonic() - began
    depth_after = rig.broker.depth(rig.names.ts_queue)
    report.add(Figure("2", f"queued, no worker: Reaper.rerung over {passes} passes after submitting", reaper.rerung,
                      f"of {n:,}", detail=f"{passes} run_once() passes over {span:.1f}s (the grace is "
                                          f"{SILENT_GRACE_S:g}s), {percentile(pass_ms, 50):.1f} ms p50 per pass; "
                                          f"queue depth {depth_before:,} before the passes, {depth_after:,} after",
                      target="0", met=reaper.rerung == 0))
    report.add(Figure("2", "queued, no worker: rung again by a reaper beside the submitter", during.rerung,
                      f"of {n:,}", detail=f"the reaper ran every {WORKER_SETTINGS['reaper_interval_s']:g}s while the "
                                          f"{n:,} were submitted ({submit_s:.1f}s, {n / submit_s:.0f}/s)",
                      target="0", met=during.rerung == 0))

    step(f"re-rings: {WORKERS} workers drain the {n:,} with a reaper beside them")
    beside = Reaper(side.ledger, side.submitter, interval_s=WORKER_SETTINGS["reaper_interval_s"],
                    retention_s=retention)
    thread = beside.start()
    fleet = Fleet(rig, "drain")
    launched_at = time.time()
    workers = [fleet.start_worker() for _ in range(WORKERS)]
    deadline = time.monotonic() + max(600.0, n / 10)
    while ledger.count(BACKLOG_FUNCTION, "Succeeded") < n:
        for worker in workers:
            rig.procs.ensure_alive(worker)
        if time.monotonic() > deadline:
            raise BenchError(f"the backlog of {n:,} did not drain in {max(600.0, n / 10):.0f}s")
        time.sleep(0.2)
    beside.stop()
    thread.join(timeout=10)
    for worker in workers:
        rig.procs.stop(worker)
    side.close()
    in_logs = sum(int(m) for w in workers for m in RERUNG_LINE.findall(w.log_path.read_text(errors="replace")))
    first, last = ledger.rows("SELECT extract(epoch FROM min(finished_at)), extract(epoch FROM max(finished_at))"
                              " FROM invocations WHERE function = %s", BACKLOG_FUNCTION)[0]
    distinct = ledger.scalar("SELECT count(*) FROM invocations WHERE function = %s"
                             " AND dispatched_at > created_at + interval '1 second'", BACKLOG_FUNCTION)
    leftover = rig.broker.depth(rig.names.ts_queue)
    rerung = in_logs + beside.rerung
    report.add(Figure("2", f"draining: doorbells rung again per 10,000 queued (N = {n:,})", rerung * 10_000 / n,
                      "", detail=f"{in_logs} by the workers' reapers (their logs), {beside.rerung} by the reaper "
                                 f"beside them; {distinct} distinct invocations re-rung (ledger); {leftover} "
                                 "doorbells left in the queue after the drain", target="0", met=rerung == 0))
    ts_drain = float(last) - float(first)
    report.add(Figure("2", f"taskservice: drain of {n:,} queued no-ops, first → last completion", ts_drain, "s",
                      detail=f"{n / ts_drain:.0f}/s; {float(last) - launched_at:.1f}s from launching "
                             f"{WORKERS} workers x {SLOTS} slots"))
    if _postmaster_start(ledger) != pg_started:
        report.note("[2] WARNING: Postgres was restarted by someone else during this phase: the figures include "
                    "that outage")
    _bare_drain(rig, report, n, ts_drain)


def _bare_drain(rig: Rig, report: Report, n: int, ts_drain: float) -> None:
    """The plain alternative: N bare Celery no-op tasks queued on the same broker, then 2 prefork workers -c 2."""
    step(f"re-rings: bare Celery, {n:,} no-op tasks queued, then {WORKERS} workers x {SLOTS}")
    app = make_app(rig.endpoints.amqp, rig.names.bare_queue)
    reset_completion(rig.redis, rig.names.redis_key)
    began = time.monotonic()
    for _ in range(n):
        app.tasks[NOOP_TASK].delay()
    publish_s = time.monotonic() - began
    env = {"BENCH_BROKER_URL": rig.endpoints.amqp, "BENCH_BARE_QUEUE": rig.names.bare_queue,
           "BENCH_REDIS_URL": rig.endpoints.redis, "BENCH_REDIS_KEY": rig.names.redis_key}
    launched_at = time.time()
    workers = [rig.procs.start(f"bare-worker-{i}", [
        venv_tool("celery"), "-A", "bench.bare_celery_app", "worker", "-c", str(SLOTS), "--pool", "prefork",
        "-Q", rig.names.bare_queue, "--loglevel", "WARNING", "--without-gossip", "--without-mingle",
        "--without-heartbeat", "-n", f"bare{i}-{rig.names.run_id}@%h"], extra_env=env) for i in range(WORKERS)]
    first: float | None = None
    deadline = time.monotonic() + 300
    while True:
        done, last = read_completion(rig.redis, rig.names.redis_key)
        if done and first is None:
            first = time.time()  # polled every 10 ms: at most that late
        if done >= n:
            break
        for worker in workers:
            rig.procs.ensure_alive(worker)
        if time.monotonic() > deadline:
            raise BenchError(f"bare Celery finished only {done}/{n} in 300s")
        time.sleep(0.01)
    for worker in workers:
        rig.procs.stop(worker)
    app.close()
    assert first is not None and last is not None
    bare = last - first
    report.add(Figure("2", f"bare Celery: drain of {n:,} queued no-ops, first → last completion", bare, "s",
                      detail=f"{n / bare:.0f}/s; {last - launched_at:.1f}s from launching {WORKERS} workers x "
                             f"{SLOTS}; published in {publish_s:.1f}s; taskservice took {ts_drain / bare:.1f} x as "
                             "long; no re-ring can happen (Celery has no reaper)"))


class cpu_note:
    """Note how busy the whole machine was during a phase (/proc/stat): on a shared 2-core machine the figures mean
    little without it. (No per-process split: the workers the bench kills, and their handler processes, are gone
    before the phase ends, so their CPU could not be told apart from other work's.)"""

    def __init__(self, rig: Rig, report: Report, phase: str) -> None:
        self.rig, self.report, self.phase = rig, report, phase

    def __enter__(self) -> None:
        self.before = snapshot({})

    def __exit__(self, *exc: object) -> None:
        cpu = breakdown(self.before, snapshot({}))
        self.report.note(f"[{self.phase}] machine-wide CPU over the phase's {cpu.wall_s:.0f}s: {cpu.cores_busy:.2f} "
                         f"of {os.cpu_count()} cores busy (the bench's processes and everything else)")


# --- main ---------------------------------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="300 invocations at 20/s, a backlog of 1,000")
    parser.add_argument("--n", type=int, default=None, help="chaos invocations (default 2000)")
    parser.add_argument("--rate", type=float, default=None, help="submissions per second (default 25)")
    parser.add_argument("--handler-s", type=float, default=0.0, help="seconds each handler sleeps (default 0)")
    parser.add_argument("--kill-every", type=float, default=2.0, help="seconds between worker kills")
    parser.add_argument("--settle", type=float, default=60.0, help="after the faults, an invocation not Succeeded "
                                                                   "when none has for this long counts as lost")
    parser.add_argument("--rering-n", type=int, default=None, help="queued invocations for phase 2 (default 10000)")
    parser.add_argument("--skip-chaos", action="store_true")
    parser.add_argument("--skip-rering", action="store_true")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    args = parser.parse_args(argv)
    plan = Plan(n=args.n or (300 if args.quick else 2000), rate=args.rate or (20.0 if args.quick else 25.0),
                handler_s=args.handler_s, kill_every_s=args.kill_every, settle_s=args.settle,
                rering_n=args.rering_n or (1000 if args.quick else 10_000), seed=args.seed)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    names = RunNames.fresh("chaos")
    results_dir = REPO / "bench" / "results" / names.run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    rig = Rig(Endpoints(postgres=args.postgres, amqp=args.amqp, redis=args.redis), names, results_dir)
    faults = ServiceFaults()
    report = Report()
    info: dict[str, str] = {}

    def body() -> None:
        step(f"setup: database {names.database}, results in {results_dir}")
        idle = background_load()
        faults.ensure_running()
        rig.setup()
        info.update({**run_header(names.run_id, idle), "postgres": rig.probe.server_version(),
                     "broker": rig.broker.server_version(),
                     "setup": f"{WORKERS} workers x {SLOTS} slots, " + ", ".join(
                         f"{k} {v:g}" for k, v in WORKER_SETTINGS.items()) + "; chaos "
                         f"N={plan.n} at {plan.rate:g}/s, handler {plan.handler_s:g}s; backlog N={plan.rering_n}"})
        if not args.skip_chaos:
            with cpu_note(rig, report, "1"):
                run_chaos(rig, plan, faults, results_dir, report)
        if not args.skip_rering:
            with cpu_note(rig, report, "2"):
                run_rering(rig, plan, results_dir, report)

    def teardown() -> None:
        faults.ensure_running()  # the database must be up to be dropped
        rig.teardown()

    status = guarded_run(body, teardown)
    print_report("chaos and re-rings (Postgres + RabbitMQ)", info, report, results_dir, artifacts="logs, executions")
    return status


if __name__ == "__main__":
    sys.exit(main())
