"""One `taskservice relay` process draining N real outbox records into one destination, timed by the ledger.

The measured figure follows the brief: from the moment the relay process is launched until the outbox holds no
pending record for the destination, so it includes the relay's start-up (interpreter, imports, first connections).
The ledger's own `delivered_at` stamps then separate that start-up from the steady rate. The profiled pass is a
separate pass, so py-spy never slows the measured one: its records are parked until the relay is up, has delivered
one of them (its destination client is then connected) and py-spy is attached, and are then released at once.
"""
from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import dataclass

from bench import machine
from bench.ledger_probe import OutboxSummary
from bench.procs import BenchError, Launched
from bench.profiling import Recording, find_py_spy, stack_shares, start_recording, stop_recording, summarise
from bench.rig import Rig, venv_tool

PROFILE_HZ = 250  # py-spy samples per second: a pass of a few seconds still gives several hundred samples

# What one relay pass (`Relay.run_once`) is made of, as substrings of py-spy frames ("func (path:line)").
RELAY_PASS = "run_once (taskservice/relay.py"
LEDGER_PARTS = {
    "Outbox.claim (SELECT … FOR UPDATE SKIP LOCKED, UPDATE … RETURNING, commit)": "claim (taskservice/ledger/outbox",
    "  of which Delivery.from_row (json.loads of each record)": "from_row (taskservice/ledger/outbox",
    "Outbox.delivered (one UPDATE … WHERE id IN (batch), commit)": "delivered (taskservice/ledger/outbox",
    "destination deliver() (the whole batch)": "deliver (taskservice/destinations/",
}
DESTINATION_PARTS = {
    "queue": {
        "  of which kombu Producer.publish": "publish (kombu/messaging",
        "  of which py-amqp basic_publish_confirm (send, then wait for this message's confirm)":
            "basic_publish_confirm (amqp/",
        "  of which reading the socket (read_frame: the confirm)": "read_frame (amqp/",
        "  of which kombu's JSON serialisation": "dumps (kombu/",
    },
    "kafka": {
        "  of which KafkaPublisher.publish_batch (produce, then poll until every report came)":
            "publish_batch (taskservice/kafka",
        "  of which json.dumps of each record": "dumps (json/",
    },
}


@dataclass(frozen=True)
class RelayRun:
    label: str
    n: int
    started: float  # epoch seconds: relay launched (measured pass) or records released (profiled pass)
    summary: OutboxSummary
    cpu: machine.CpuBreakdown

    @property
    def complete(self) -> bool:
        return self.summary.delivered >= self.n and self.summary.last_delivered is not None

    @property
    def rate(self) -> float | None:
        if not self.complete or self.summary.last_delivered is None:
            return None
        return self.n / (self.summary.last_delivered - self.started)

    @property
    def startup_s(self) -> float | None:
        first = self.summary.first_delivered
        return None if first is None else first - self.started

    @property
    def steady_rate(self) -> float | None:
        """Records after the first batch ÷ time from the first batch to the last: the rate once running."""
        s = self.summary
        if not self.complete or s.first_delivered is None or s.last_delivered is None:
            return None
        span = s.last_delivered - s.first_delivered
        return (s.delivered - s.first_batch) / span if span > 0 else None

    def describe(self) -> str:
        s = self.summary
        incomplete = "" if self.complete else f" INCOMPLETE: {s.delivered} delivered, {s.pending} pending;"
        startup = "n/a" if self.startup_s is None else f"{self.startup_s:.2f} s"
        steady = "n/a" if self.steady_rate is None else f"{self.steady_rate:,.0f}/s"
        return (f"N={self.n}, records {s.avg_record_bytes:.0f} B avg;{incomplete} first batch ({s.first_batch}) "
                f"delivered {startup} after start; steady rate after it {steady}; {s.failed} failed, "
                f"{s.retried} retried; CPU {self.cpu.describe()}")


def start_relay(rig: Rig, name: str, env: Mapping[str, str]) -> Launched:
    return rig.procs.start(name, [venv_tool("taskservice"), "relay", "--loglevel", "INFO"], extra_env=env,
                           watched=True)


def drain(rig: Rig, destination: str, *, timeout_s: float) -> int:
    """Poll the ledger until no record for `destination` is pending (or time is up); returns how many still are."""
    deadline = time.monotonic() + timeout_s
    while (pending := rig.probe.outbox_pending(destination)) > 0 and time.monotonic() < deadline:
        rig.procs.check()
        time.sleep(0.02)
    return pending


def timeout_for(n: int) -> float:
    """Generous but bounded: a stuck relay must not hang the bench."""
    return max(60.0, n / 50)


def measure(rig: Rig, label: str, destination: str, n: int, env: Mapping[str, str],
            extra_sessions: Mapping[int, str]) -> RelayRun:
    """Launch one relay over N pending records and time it until they are all delivered."""
    before = machine.snapshot(_sessions(rig, extra_sessions))
    started = time.time()
    relay = start_relay(rig, f"relay-{label}", env)
    drain(rig, destination, timeout_s=timeout_for(n))
    cpu = machine.breakdown(before, machine.snapshot(_sessions(rig, extra_sessions)))
    summary = rig.probe.outbox_summary(destination)
    rig.procs.stop(relay)
    return RelayRun(label, n, started, summary, cpu)


def _sessions(rig: Rig, extra: Mapping[int, str]) -> dict[int, str]:
    """Session id → label for the CPU breakdown: what the rig launched plus the Kafka broker, which it did not."""
    return {**rig.procs.session_labels(), **extra}


def _wait_for_log(relay: Launched, rig: Rig, text: str, timeout_s: float = 30.0) -> None:
    deadline = time.monotonic() + timeout_s
    while text not in relay.log_tail(50):
        rig.procs.ensure_alive(relay)
        if time.monotonic() > deadline:
            raise BenchError(f"{relay.name} did not log {text!r} within {timeout_s:.0f}s:\n{relay.log_tail()}")
        time.sleep(0.05)


def profile(rig: Rig, label: str, kind: str, destination: str, n: int, env: Mapping[str, str],
            extra_sessions: Mapping[int, str]) -> tuple[RelayRun | None, list[str]]:
    """A separate pass with py-spy (wall and cpu views) on a warm relay; returns the run and the summary lines.

    The records are parked, the relay started and warmed up with one of them, py-spy attached, and then the other
    n - 1 released at once, so the profile shows the steady state."""
    py_spy = find_py_spy()
    if py_spy is None:
        return None, ["profile skipped: py-spy not installed (pip install py-spy)"]
    rig.probe.park_outbox(destination)
    relay = start_relay(rig, f"relay-{label}", env)
    _wait_for_log(relay, rig, "started")
    warm_up(rig, destination, n)
    recordings = [start_recording(rig.procs, py_spy, relay.pid, f"relay-{label}", rig.results_dir, mode=mode,
                                  rate=PROFILE_HZ) for mode in ("wall", "cpu")]
    time.sleep(1.0)  # let py-spy attach before the work starts
    sessions = _sessions(rig, extra_sessions)
    try:
        before = machine.snapshot(sessions)
        started = time.time()
        rig.probe.release_outbox(destination)
        drain(rig, destination, timeout_s=timeout_for(n))
        cpu = machine.breakdown(before, machine.snapshot(sessions))
    finally:
        for recording in recordings:
            stop_recording(rig.procs, recording)
    run = RelayRun(label, n - 1, started, rig.probe.outbox_summary(destination, since=started), cpu)
    rig.procs.stop(relay)
    return run, [line for recording in recordings for line in _profile_lines(recording, kind)]


def warm_up(rig: Rig, destination: str, n: int, timeout_s: float = 30.0) -> None:
    """Release one record and wait until it is delivered: the relay builds a destination's client on first use
    (AMQP connection, Kafka producer id), which is start-up, not the steady state the profile is for."""
    rig.probe.release_outbox(destination, limit=1)
    deadline = time.monotonic() + timeout_s
    while rig.probe.outbox_pending(destination) >= n:
        rig.procs.check()
        if time.monotonic() > deadline:
            raise BenchError(f"the relay did not deliver a first record to {destination} within {timeout_s:.0f}s")
        time.sleep(0.02)


def _profile_lines(recording: Recording, kind: str) -> list[str]:
    """The generic summary, then the relay's passes split into ledger and destination work."""
    lines = summarise(recording)
    shares, samples = stack_shares(recording, {**LEDGER_PARTS, **DESTINATION_PARTS.get(kind, {})},
                                   within=RELAY_PASS)
    if samples:
        lines.append(f"  {recording.mode} view, share of the relay's passes (Relay.run_once, {samples} samples; "
                     "idle time left out):")
        lines += [f"    {100 * share:5.1f}%  {part}" for part, share in shares.items()]
    return lines
