"""`triggers put|list|show|delete` (Kafka event source mappings, through the API) and `ingest` (runs them)."""
from __future__ import annotations

import logging
import signal
from pathlib import Path
from typing import Any

import click

from taskservice.cli.output import api_errors, client_of, print_json, print_table
from taskservice.cli.server_commands import ready_file_option


@click.group()
def triggers() -> None:
    """Triggers: Kafka topics, timers, object-storage events and broker queues that invoke a function."""


@triggers.command("put")
@click.argument("name")
@click.option("--kind", type=click.Choice(["kafka", "timer", "storage", "queue"]), default="kafka",
              show_default=True, help="What invokes the function.")
@click.option("--function", required=True, help="The function each event (or batch) invokes.")
@click.option("--topic", "topics", multiple=True, help="kafka: a topic to consume; repeat for several.")
@click.option("--group", "consumer_group", default=None, help="kafka: consumer group (default taskservice-NAME).")
@click.option("--batch-size", type=int, default=None,
              help="kafka, queue: records per invocation, 1..10000 (default 100 / 10).")
@click.option("--window", "batching_window_s", type=float, default=None,
              help="kafka, queue: seconds to wait to fill a batch, 0..15.")
@click.option("--starting-position", type=click.Choice(["earliest", "latest"]), default=None,
              help="kafka: where a new consumer group starts (default latest).")
@click.option("--cron", default=None,
              help="timer: '0 */5 * * * *' (seconds first), 5 fields, '@every 30s'; CRON_TZ=Area/City prefix.")
@click.option("--payload", default=None, help="timer: the text passed as the event's payload.")
@click.option("--bucket", default=None, help="storage: the bucket watched.")
@click.option("--event", "events", multiple=True,
              help="storage: s3:ObjectCreated:*, s3:ObjectRemoved:* or an exact name; repeatable.")
@click.option("--prefix", default=None, help="storage: only keys starting with this.")
@click.option("--suffix", default=None, help="storage: only keys ending with this.")
@click.option("--queue", default=None, help="queue: the broker queue consumed.")
@click.option("--disabled", is_flag=True, help="Create or keep it switched off.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def put(ctx: click.Context, name: str, kind: str, topics: tuple[str, ...], events: tuple[str, ...], disabled: bool,
        as_json: bool, **options: Any) -> None:
    """Create or replace trigger NAME. The server checks the fields of each kind and names any that do not fit."""
    config = {k: v for k, v in options.items() if v is not None}
    if topics:
        config["topics"] = list(topics)
    if events:
        config["events"] = list(events)
    if kind != "kafka":
        config["kind"] = kind
    elif "topics" not in config:
        raise click.UsageError("a kafka trigger needs at least one --topic")
    config["enabled"] = not disabled
    with api_errors():
        trigger = client_of(ctx).put_trigger(name, config)
    if as_json:
        print_json(trigger)
    else:
        click.echo(f"trigger {trigger['name']} ({trigger['kind']}): {_source(trigger)} → {trigger['function']} "
                   f"({'enabled' if trigger['enabled'] else 'disabled'})")


def _source(t: dict[str, Any]) -> str:
    """What a trigger listens to, in a few words."""
    if t["kind"] == "timer":
        return f"cron {t['cron']!r}"
    if t["kind"] == "storage":
        return f"bucket {t['bucket']} {','.join(t['events'])} {t['prefix']}*{t['suffix']}"
    if t["kind"] == "queue":
        return f"queue {t['queue']} (batch {t['batch_size']}, window {t['batching_window_s']}s)"
    return (f"{','.join(t['topics'])} (batch {t['batch_size']}, window {t['batching_window_s']}s, group "
            f"{t['consumer_group']})")


def _status(t: dict[str, Any]) -> str:
    """The kind-specific status: Kafka lag, a timer's next fire time, the last storage event, a queue's backlog; a
    Kafka or queue trigger's duplicates."""
    s = t["status"]
    if t["kind"] == "kafka":
        return f"lag {_lag(t)}, duplicates {s.get('duplicates', 0)}"
    if t["kind"] == "timer":
        return (f"next {s.get('nextFireTime') or '-'}, fired {s.get('fired', 0)}, missed {s.get('missed', 0)}, "
                f"last {s.get('lastFireTime') or '-'}")
    if t["kind"] == "storage":
        return f"events {s.get('events', 0)}, last {s.get('lastEvent') or '-'} at {s.get('lastEventTime') or '-'}"
    return (f"backlog {s.get('backlog', '-')}, messages {s.get('messages', 0)}, batches {s.get('batches', 0)}, "
            f"dead letters {s.get('deadLetters', 0)}, duplicates {s.get('duplicates', 0)}")


def _lag(trigger: dict[str, Any]) -> str:
    total = trigger["lag"]["total"]
    return "-" if total is None else str(total)


@triggers.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_triggers(ctx: click.Context, as_json: bool) -> None:
    """Triggers with their lag (records not yet committed)."""
    with api_errors():
        items = client_of(ctx).list_triggers()
    if as_json:
        print_json(items)
        return
    print_table(items, [("NAME", lambda t: t["name"]), ("KIND", lambda t: t["kind"]), ("SOURCE", _source),
                        ("FUNCTION", lambda t: t["function"]),
                        ("ENABLED", lambda t: "yes" if t["enabled"] else "no"), ("STATUS", _status)])


@triggers.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One trigger, with its status (lag per partition, next tick, last event, backlog)."""
    with api_errors():
        trigger = client_of(ctx).get_trigger(name)
    if as_json:
        print_json(trigger)
        return
    if trigger["kind"] != "kafka":
        click.echo(f"{trigger['name']} ({trigger['kind']}): {_source(trigger)} → {trigger['function']}  "
                   f"{'enabled' if trigger['enabled'] else 'disabled'}")
        click.echo(_status(trigger))
        return
    click.echo(f"{trigger['name']}: {','.join(trigger['topics'])} → {trigger['function']}  group "
               f"{trigger['consumer_group']}  batch {trigger['batch_size']}  window {trigger['batching_window_s']}s  "
               f"start {trigger['starting_position']}  {'enabled' if trigger['enabled'] else 'disabled'}")
    click.echo(f"lag {_lag(trigger)}")
    print_table(trigger["lag"]["partitions"], [
        ("TOPIC", lambda p: p["topic"]), ("PARTITION", lambda p: p["partition"]),
        ("COMMITTED", lambda p: p["committed"]), ("HIGH", lambda p: p["high"]), ("LAG", lambda p: p["lag"]),
        ("AT", lambda p: p["at"])])


@triggers.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete trigger NAME; ingest processes stop consuming for it within seconds."""
    with api_errors():
        client_of(ctx).delete_trigger(name)
    click.echo(f"deleted trigger {name}")


@click.command()
@click.option("--trigger", "only", multiple=True, help="Run only this trigger (repeatable); default: all enabled.")
@click.option("--loglevel", default="INFO", show_default=True)
@ready_file_option
def ingest(only: tuple[str, ...], loglevel: str, ready_file: Path | None) -> None:
    """Consume Kafka for every enabled trigger and submit batch invocations. Run as many as you like: processes
    share each trigger's partitions through its consumer group."""
    from taskservice.cli.server_commands import load_settings, require_current_schema
    from taskservice.ingest.kafka import Ingestor
    from taskservice.services import Services

    settings = load_settings()
    if not settings.kafka_bootstrap:
        raise click.ClickException("ingest needs TASKSERVICE_KAFKA_BOOTSTRAP (host:port of a Kafka broker)")
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/ingest] %(message)s")
    services = Services.build(settings)
    ingestor = Ingestor(services, settings.kafka_bootstrap, only=only)
    signal.signal(signal.SIGTERM, lambda *_: ingestor.stop.set())
    if ready_file is not None:
        ready_file.touch()
    try:
        ingestor.run_forever()
    except KeyboardInterrupt:
        ingestor.stop.set()
    finally:
        services.close()


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@ready_file_option
def scheduler(loglevel: str, ready_file: Path | None) -> None:
    """Fire timer triggers. Run as many as you like: a tick's invocation id derives from the trigger and the
    scheduled time, so several schedulers never fire one tick twice."""
    from taskservice.cli.server_commands import load_settings, require_current_schema
    from taskservice.scheduler import Scheduler
    from taskservice.services import Services

    settings = load_settings()
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/scheduler] %(message)s")
    services = Services.build(settings)
    the_scheduler = Scheduler(services)
    signal.signal(signal.SIGTERM, lambda *_: the_scheduler.stop.set())
    if ready_file is not None:
        ready_file.touch()
    try:
        the_scheduler.run_forever()
    except KeyboardInterrupt:
        the_scheduler.stop.set()
    finally:
        services.close()


@click.command()
@click.option("--trigger", "only", multiple=True, help="Run only this queue trigger (repeatable); default: all.")
@click.option("--loglevel", default="INFO", show_default=True)
@ready_file_option
def consume(only: tuple[str, ...], loglevel: str, ready_file: Path | None) -> None:
    """Consume broker queues for every enabled queue trigger, one invocation per batch, acknowledged after the
    ledger holds it. Run as many as you like: the broker shares each queue's messages between them."""
    from taskservice.cli.server_commands import load_settings, require_current_schema
    from taskservice.queue_trigger import QueueConsumers
    from taskservice.services import Services

    settings = load_settings()
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/consume] %(message)s")
    services = Services.build(settings)
    consumers = QueueConsumers(services, only=only)
    signal.signal(signal.SIGTERM, lambda *_: consumers.stop.set())
    if ready_file is not None:
        ready_file.touch()
    try:
        consumers.run_forever()
    except KeyboardInterrupt:
        consumers.stop.set()
    finally:
        services.close()
