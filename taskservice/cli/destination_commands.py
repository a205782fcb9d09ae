"""`destinations tail` (watch records arrive) and `dlq list` (the dead-letter store)."""
from __future__ import annotations

import json
from typing import Any

import click

from taskservice.cli.output import api_errors, client_of, print_json, print_table
from taskservice.cli.server_commands import load_settings


@click.group()
def destinations() -> None:
    """Look at destinations by hand."""


@destinations.command("tail")
@click.argument("uri")
@click.option("--timeout", "timeout_s", type=float, default=None,
              help="Stop after this many seconds without a record (default: run until Ctrl-C).")
@click.option("--count", type=int, default=None, help="Stop after this many records.")
@click.option("--from-beginning", is_flag=True, help="kafka: read the topic from its first offset.")
def tail(uri: str, timeout_s: float | None, count: int | None, from_beginning: bool) -> None:
    """Print records arriving at queue:NAME or kafka:TOPIC, one JSON document per line.

    \b
    On RabbitMQ a temporary queue sees copies, so the real consumer misses nothing. On the embedded broker the
    queue itself is read: records shown here are taken from it.
    """
    scheme, _, target = uri.partition(":")
    if scheme not in ("queue", "kafka") or not target:
        raise click.BadParameter("give queue:NAME or kafka:TOPIC", param_hint="URI")
    settings = load_settings()
    seen = 0
    for record in _records(scheme, target, settings, timeout_s, from_beginning):
        click.echo(json.dumps(record, ensure_ascii=False))
        seen += 1
        if count is not None and seen >= count:
            break
    click.echo(f"{seen} record(s)", err=True)


def _records(scheme: str, target: str, settings: Any, timeout_s: float | None, from_beginning: bool) -> Any:
    if scheme == "queue":
        from taskservice.broker import broker_options
        from taskservice.destinations.queue import tail_queue

        url, options = broker_options(settings)
        return tail_queue(target, url=url, transport_options=options, timeout_s=timeout_s)
    if not settings.kafka_bootstrap:
        raise click.ClickException("kafka: needs TASKSERVICE_KAFKA_BOOTSTRAP (host:port of a broker)")
    from taskservice.kafka import tail as kafka_tail

    records = kafka_tail(settings.kafka_bootstrap, target, from_beginning=from_beginning, group=None,
                         timeout_s=timeout_s)
    return (json.loads(r.value or b"null") for r in records)


@click.group()
def dlq() -> None:
    """The dead-letter store: every failure record."""


@dlq.command("list")
@click.option("--function", default=None)
@click.option("--condition", type=click.Choice(["RetriesExhausted", "EventAgeExceeded", "Stopped", "Invalid"]),
              default=None)
@click.option("--since", default=None, help="ISO 8601 or epoch ms.")
@click.option("--until", default=None, help="ISO 8601 or epoch ms.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor", default=None)
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_list(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Failure records, newest first."""
    with api_errors():
        page = client_of(ctx).request("GET", "/v1/dead-letters", params=params)
    if as_json:
        print_json(page)
        return
    print_table(page["items"], [
        ("ID", lambda d: d["id"]), ("FUNCTION", lambda d: d["function"]),
        ("INVOCATION ID", lambda d: d["invocationId"]), ("CONDITION", lambda d: d["condition"]),
        ("ERROR", lambda d: d["errorType"]), ("CREATED", lambda d: d["createdAt"])])
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")
