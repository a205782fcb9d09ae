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
    """Kafka triggers: topics whose records invoke a function in batches."""


@triggers.command("put")
@click.argument("name")
@click.option("--function", required=True, help="The function each batch invokes.")
@click.option("--topic", "topics", multiple=True, required=True, help="A topic to consume; repeat for several.")
@click.option("--group", "consumer_group", default=None, help="Consumer group (default taskservice-NAME).")
@click.option("--batch-size", type=int, default=None, help="Records per invocation, 1..10000 (default 100).")
@click.option("--window", "batching_window_s", type=float, default=None,
              help="Seconds to wait to fill a batch, 0..15 (default 0.5).")
@click.option("--starting-position", type=click.Choice(["earliest", "latest"]), default=None,
              help="Where a new consumer group starts (default latest).")
@click.option("--disabled", is_flag=True, help="Create or keep it switched off.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def put(ctx: click.Context, name: str, topics: tuple[str, ...], disabled: bool, as_json: bool, **options: Any) -> None:
    """Create or replace trigger NAME."""
    config = {k: v for k, v in options.items() if v is not None}
    config["topics"] = list(topics)
    config["enabled"] = not disabled
    with api_errors():
        trigger = client_of(ctx).request("PUT", f"/v1/triggers/{name}", json_body=config, send_json=True)
    if as_json:
        print_json(trigger)
    else:
        click.echo(f"trigger {trigger['name']}: {','.join(trigger['topics'])} → {trigger['function']} "
                   f"(batch {trigger['batch_size']}, window {trigger['batching_window_s']}s, group "
                   f"{trigger['consumer_group']}, {'enabled' if trigger['enabled'] else 'disabled'})")


def _lag(trigger: dict[str, Any]) -> str:
    total = trigger["lag"]["total"]
    return "-" if total is None else str(total)


@triggers.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_triggers(ctx: click.Context, as_json: bool) -> None:
    """Triggers with their lag (records not yet committed)."""
    with api_errors():
        items = client_of(ctx).request("GET", "/v1/triggers")["items"]
    if as_json:
        print_json(items)
        return
    print_table(items, [("NAME", lambda t: t["name"]), ("TOPICS", lambda t: ",".join(t["topics"])),
                        ("FUNCTION", lambda t: t["function"]), ("BATCH", lambda t: t["batch_size"]),
                        ("ENABLED", lambda t: "yes" if t["enabled"] else "no"), ("LAG", _lag)])


@triggers.command("show")
@click.argument("name")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """One trigger, with its lag per partition."""
    with api_errors():
        trigger = client_of(ctx).request("GET", f"/v1/triggers/{name}")
    if as_json:
        print_json(trigger)
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
        client_of(ctx).request("DELETE", f"/v1/triggers/{name}")
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
