"""`destinations tail` (watch records arrive), `dlq list` and `dlq replay` (the dead-letter store)."""
from __future__ import annotations

import json
from typing import Any

import click

from taskservice.cli.output import api_errors, client_of, parse_json_option, print_json, print_page, print_table
from taskservice.cli.server_commands import load_settings
from taskservice.statuses import FAILURE_CONDITIONS


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
@click.option("--condition", type=click.Choice(FAILURE_CONDITIONS),
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
    print_page(page, [
        ("ID", lambda d: d["id"]), ("FUNCTION", lambda d: d["function"]),
        ("INVOCATION ID", lambda d: d["invocationId"]), ("CONDITION", lambda d: d["condition"]),
        ("ERROR", lambda d: d["errorType"]), ("CREATED", lambda d: d["createdAt"])], as_json=as_json)


@dlq.command("replay")
@click.argument("dead_letter_id", type=int, required=False)
@click.option("--payload", default=None, help="Replay ID with this JSON payload instead of the recorded one.")
@click.option("--force", is_flag=True, help="Replay even if this failure was replayed before.")
@click.option("--function", default=None, help="Filter: replay this function's failures.")
@click.option("--condition", type=click.Choice(FAILURE_CONDITIONS),
              default=None, help="Filter: only this condition.")
@click.option("--since", default=None, help="Filter: ISO 8601 (UTC when naive).")
@click.option("--until", default=None, help="Filter: ISO 8601 (UTC when naive).")
@click.option("--limit", type=int, default=100, show_default=True, help="Filter: at most this many (newest first).")
@click.option("--from", "source", default=None,
              help="Replay Function Compute records taken from queue:NAME or kafka:TOPIC instead of the store.")
@click.option("--target-function", default=None, help="With --from: invoke this function, not the one in the ARN.")
@click.option("--timeout", "idle_s", type=float, default=2.0, show_default=True,
              help="With --from: stop after this many seconds without a record.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def dlq_replay(ctx: click.Context, dead_letter_id: int | None, payload: str | None, force: bool, source: str | None,
               target_function: str | None, idle_s: float, as_json: bool, **filters: Any) -> None:
    """Replay one failure (ID), many by filter, or records from an external queue or topic (--from).

    \b
    Idempotent: a failure replayed before is reported as a duplicate unless --force.
      taskservice dlq replay 42 --payload '{"fixed": true}'
      taskservice dlq replay --function etl --condition RetriesExhausted --since 2026-11-22T00:00
      taskservice dlq replay --from queue:dead-letter-queue
    """
    client = client_of(ctx)
    if dead_letter_id is not None:
        if source is not None or any(v is not None for k, v in filters.items() if k != "limit"):
            raise click.UsageError("give an ID, a filter or --from, not several")
        body: dict[str, Any] = {"force": force}
        if payload is not None:
            body["payload"] = parse_json_option(payload, "--payload")
        with api_errors():
            answer = client.request("POST", f"/v1/dead-letters/{dead_letter_id}/replay", json_body=body,
                                    send_json=True)
        if as_json:
            print_json(answer)
        else:
            click.echo(f"replayed dead letter {dead_letter_id} as {answer['function']}/{answer['invocationId']} "
                       f"({answer['status']}, replay of request {answer['replayOf']})")
        return
    if payload is not None:
        raise click.UsageError("--payload applies to one dead letter: give its ID")
    if source is not None:
        outcomes = _replay_from(client, source, target_function, force, idle_s)
    else:
        if target_function is not None:
            raise click.UsageError("--target-function applies to --from")
        with api_errors():
            outcomes = [client.request("POST", "/v1/dead-letters/replay", send_json=True,
                                       json_body={"force": force, **{k: v for k, v in filters.items()
                                                                      if v is not None}})]
    items = [item for answer in outcomes for item in answer["items"]]
    if as_json:
        print_json(items)
        return
    print_table(items, [("SOURCE", lambda o: o["source"]), ("OUTCOME", lambda o: o["outcome"]),
                        ("INVOCATION", lambda o: o["invocationId"] and f"{o['function']}/{o['invocationId']}"),
                        ("ERROR", lambda o: o["error"])])
    counts = {k: sum(o["outcome"] == k for o in items) for k in ("replayed", "duplicate", "failed")}
    click.echo(", ".join(f"{v} {k}" for k, v in counts.items()))


def _replay_from(client: Any, source: str, target_function: str | None, force: bool, idle_s: float
                 ) -> list[dict[str, Any]]:
    """Post records from an external queue/topic in batches; a queue's messages are acknowledged only after the
    API answered for them, so a failed run leaves them in the queue."""
    scheme, _, target = source.partition(":")
    if scheme not in ("queue", "kafka") or not target:
        raise click.BadParameter("give queue:NAME or kafka:TOPIC", param_hint="--from")
    settings = load_settings()
    answers = []

    def post(records: list[Any]) -> None:
        body: dict[str, Any] = {"records": records, "force": force}
        if target_function is not None:
            body["target_function"] = target_function
        with api_errors():
            answers.append(client.request("POST", "/v1/dead-letters/replay", json_body=body, send_json=True))

    if scheme == "queue":
        from taskservice.broker import broker_options
        from taskservice.destinations.queue import drain_queue

        url, options = broker_options(settings)
        for records, ack in drain_queue(target, url=url, transport_options=options, idle_s=idle_s):
            post(records)
            ack()
        return answers
    if not settings.kafka_bootstrap:
        raise click.ClickException("kafka: needs TASKSERVICE_KAFKA_BOOTSTRAP (host:port of a broker)")
    from taskservice.kafka import tail as kafka_tail

    batch: list[Any] = []
    for record in kafka_tail(settings.kafka_bootstrap, target, from_beginning=True, group="taskservice-dlq-replay",
                             timeout_s=idle_s):
        batch.append(json.loads(record.value or b"null"))
        if len(batch) >= 100:
            post(batch)
            batch = []
    if batch:
        post(batch)
    return answers
