"""Commands that talk to the API: functions, invoke, tasks."""
from __future__ import annotations

import sys
import time
from pathlib import Path
from typing import Any

import click

from taskservice.cli.output import (
    api_errors,
    client_of,
    parse_json_option,
    print_json,
    print_page,
    print_table,
    status_text,
)
from taskservice.client import Client, InvocationInfo, Submitted
from taskservice.statuses import TERMINAL


# --- functions --------------------------------------------------------------------------------------------------
@click.group()
def functions() -> None:
    """Register, list and delete functions."""


@functions.command("deploy")
@click.argument("name")
@click.option("--handler", required=True, help='"package.module:callable", importable on the workers.')
@click.option("--timeout", "timeout_s", type=int, default=None, help="Seconds per attempt, 1..86400 (default 300).")
@click.option("--max-retries", type=int, default=None, help="0..8 (default 3).")
@click.option("--max-event-age", "max_event_age_s", type=int, default=None, help="Seconds, 1..604800 (default 86400).")
@click.option("--on-success", default=None, help="Destination URI for success records.")
@click.option("--on-failure", default=None, help="Destination URI for failure records.")
@click.option("--concurrency", type=int, default=None, help="At most this many running at once.")
@click.option("--description", default=None)
@click.option("--json", "as_json", is_flag=True, help="Print the function as JSON.")
@click.pass_context
def deploy(ctx: click.Context, name: str, as_json: bool, **options: Any) -> None:
    """Register function NAME, or replace its config."""
    config = {k: v for k, v in options.items() if v is not None}
    with api_errors():
        fn = client_of(ctx).put_function(name, config)
    if as_json:
        print_json(fn)
    else:
        click.echo(f"function {fn['name']} → {fn['handler']} (timeout {fn['timeout_s']}s, "
                   f"{fn['max_retries']} retries, max event age {fn['max_event_age_s']}s)")


@functions.command("list")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_functions(ctx: click.Context, as_json: bool) -> None:
    """List registered functions."""
    with api_errors():
        items = client_of(ctx).list_functions()
    if as_json:
        print_json(items)
        return
    print_table(items, [("NAME", lambda f: f["name"]), ("HANDLER", lambda f: f["handler"]),
                        ("TIMEOUT", lambda f: f"{f['timeout_s']}s"), ("RETRIES", lambda f: f["max_retries"]),
                        ("ON SUCCESS", lambda f: f["on_success"]), ("ON FAILURE", lambda f: f["on_failure"])])


@functions.command("delete")
@click.argument("name")
@click.pass_context
def delete_function(ctx: click.Context, name: str) -> None:
    """Delete function NAME; invocations that have not started end Invalid."""
    with api_errors():
        client_of(ctx).delete_function(name)
    click.echo(f"deleted function {name}")


# --- invoke -----------------------------------------------------------------------------------------------------
@click.command()
@click.argument("function")
@click.option("-e", "--event", default=None, help="Payload as JSON text.")
@click.option("--event-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="Payload from a JSON file.")
@click.option("--invocation-id", default=None, help="Caller-chosen id; a second submission with it gets 409.")
@click.option("--delay", "delay_s", type=float, default=None,
              help="Seconds (0..3600) before it may start (X-Invocation-Delay).")
@click.option("--wait", is_flag=True, help="Show a progress bar and wait for the end.")
@click.option("--json", "as_json", is_flag=True, help="Print the answer (and the final invocation) as JSON.")
@click.pass_context
def invoke(ctx: click.Context, function: str, event: str | None, event_file: Path | None,
           invocation_id: str | None, delay_s: float | None, wait: bool, as_json: bool) -> None:
    """Submit an asynchronous invocation of FUNCTION."""
    if event is not None and event_file is not None:
        raise click.UsageError("give either -e/--event or --event-file, not both")
    payload = None
    if event is not None:
        payload = parse_json_option(event, "-e/--event")
    elif event_file is not None:
        payload = parse_json_option(event_file.read_text(), "--event-file")
    client = client_of(ctx)
    with api_errors():
        raw = client.submit(function, payload, invocation_id=invocation_id, delay_s=delay_s)
    submitted = Submitted.from_api(raw)
    if as_json and not wait:
        print_json(raw)
        return
    if not as_json:
        starts = f", starts in {delay_s:g}s" if delay_s else ""
        click.echo(f"invocation {submitted.invocation_id} of {function}: {status_text(submitted.status)} "
                   f"(request {submitted.request_id}{starts})")
    if wait:
        final = _wait(client, function, submitted.invocation_id, quiet=as_json)
        if as_json:
            print_json(final.raw)
        if not final.succeeded:
            ctx.exit(1)


def _percent(inv: InvocationInfo) -> int:
    return 100 if inv.succeeded else int(inv.progress_percent or 0)


def _wait(client: Client, function: str, invocation_id: str, *, quiet: bool, poll_s: float = 0.3) -> InvocationInfo:
    """Wait through the SDK's `wait`: a live bar on a terminal, one line per change otherwise (CI logs, pipes)."""
    with api_errors():
        if quiet:
            return client.wait(function, invocation_id, poll_s=poll_s)
        if sys.stdout.isatty():
            with click.progressbar(length=100, show_percent=True, label="Enqueued") as bar:
                def on_bar(inv: InvocationInfo) -> None:
                    bar.label = f"{inv.status:<9} {(inv.progress_message or '')[:40]}"
                    bar.update(max(0, _percent(inv) - bar.pos))

                inv = client.wait(function, invocation_id, poll_s=poll_s, progress=on_bar)
        else:
            last_line = ""

            def on_line(inv: InvocationInfo) -> None:
                nonlocal last_line
                line = f"{inv.status:<9} {_percent(inv):3d}%  {(inv.progress_message or '')[:40]}".rstrip()
                if line != last_line:
                    click.echo(line)
                    last_line = line

            inv = client.wait(function, invocation_id, poll_s=poll_s, progress=on_line)
    click.echo(f"{status_text(inv.status)} after {inv.attempts} attempt(s)")
    if inv.succeeded:
        print_json(inv.result)
    else:
        first_line = inv.error.splitlines()[0] if inv.error else ""
        click.echo(f"{inv.error_type or 'Error'}: {first_line}", err=True)
    return inv


# --- tasks ------------------------------------------------------------------------------------------------------
@click.group()
def tasks() -> None:
    """List, inspect, stop and retry invocations."""


@tasks.command("list")
@click.option("--function", default=None)
@click.option("--status", default=None, help="One or more, comma-separated (e.g. Failed,Expired).")
@click.option("--prefix", default=None, help="Invocation-id prefix.")
@click.option("--since", default=None, help="ISO 8601 or epoch ms.")
@click.option("--until", default=None, help="ISO 8601 or epoch ms.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor", default=None, help="next_cursor from a previous page.")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def list_tasks(ctx: click.Context, as_json: bool, **params: Any) -> None:
    """Invocations, newest first."""
    with api_errors():
        page = client_of(ctx).list_invocations(**params)
    print_page(page, [
        ("FUNCTION", lambda i: i["function"]), ("INVOCATION ID", lambda i: i["invocationId"]),
        ("STATUS", lambda i: i["status"]), ("ATTEMPTS", lambda i: i["attempts"]),
        ("CREATED", lambda i: i["createdAt"]), ("DURATION", lambda i: _ms(i["durationMs"])),
        ("PROGRESS", lambda i: None if i["progress"]["percent"] is None else f"{i['progress']['percent']:.0f}%")],
        as_json=as_json)


def _ms(value: float | None) -> str | None:
    return None if value is None else (f"{value / 1000:.1f}s" if value >= 1000 else f"{value:.0f}ms")


@tasks.command("show")
@click.argument("function")
@click.argument("invocation_id")
@click.option("--json", "as_json", is_flag=True)
@click.pass_context
def show(ctx: click.Context, function: str, invocation_id: str, as_json: bool) -> None:
    """One invocation: status, attempts, payload, result or error, and its timeline."""
    with api_errors():
        inv = client_of(ctx).get_invocation(function, invocation_id)
    if as_json:
        print_json(inv)
        return
    click.echo(f"{inv['function']}/{inv['invocationId']}  {status_text(inv['status'])}  "
               f"attempts {inv['attempts']}  request {inv['requestId']}")
    if inv["progress"]["percent"] is not None:
        click.echo(f"progress  {inv['progress']['percent']:.0f}% {inv['progress']['message'] or ''}")
    click.echo(f"created   {inv['createdAt']}   started {inv['startedAt'] or '-'}   "
               f"finished {inv['finishedAt'] or '-'}")
    click.echo("payload   " + _compact(inv["payload"]))
    if inv["status"] == "Succeeded":
        click.echo("result    " + _compact(inv["result"]))
    if inv["error"]:
        click.echo(f"error     {inv['errorType']}: {inv['error']}")
    for d in inv.get("destinations", []):
        extra = f", last error: {d['lastError']}" if d["lastError"] else ""
        click.echo(f"record    → {d['destination']}: {d['status']} after {d['attempts']} attempt(s){extra}")
    click.echo("timeline")
    for t in inv["transitions"]:
        click.echo(f"  {t['at']}  {t['from'] or '∅':>9} → {status_text(t['to']):<9}  #{t['attempt']}  {t['reason']}")


def _compact(value: Any, limit: int = 400) -> str:
    import json

    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


@tasks.command("logs")
@click.argument("function")
@click.argument("invocation_id")
@click.option("--attempt", type=int, default=None, help="Only this attempt.")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new lines until the invocation ends.")
@click.pass_context
def logs(ctx: click.Context, function: str, invocation_id: str, attempt: int | None, follow: bool) -> None:
    """The invocation's log lines (handler logger and process output)."""
    client = client_of(ctx)
    printed = 0
    with api_errors():
        while True:
            answer = client.logs(function, invocation_id, attempt=attempt)
            for line in answer["items"][printed:]:
                click.echo(f"{line['at']}  #{line['attempt']}  {line['level']:<7} {line['message']}")
            printed = len(answer["items"])
            if not follow or answer["status"] in TERMINAL:
                return
            time.sleep(0.5)
