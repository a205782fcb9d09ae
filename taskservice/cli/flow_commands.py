"""`taskservice engine` (the flow engine process) and `taskservice flows …` (flows and executions through the API:
deploy, list, show, delete, start, executions, describe, history, stop, redrive). Every client command takes
--json for scripts; refused input changes nothing and says why."""
from __future__ import annotations

import json
import logging
import signal
import sys
import time
from pathlib import Path
from typing import Any

import click

from taskservice.cli.flow_output import flow_errors, history_line, print_execution, progress_text
from taskservice.cli.output import client_of, parse_json_option, print_json, print_page, print_table, status_text
from taskservice.cli.server_commands import ready_file_option
from taskservice.client import Client
from taskservice.flow_client import ExecutionInfo, ExecutionStarted


@click.command()
@click.option("--loglevel", default="INFO", show_default=True)
@ready_file_option
def engine(loglevel: str, ready_file: Path | None) -> None:
    """Advance flow executions as their steps end and their timers come due. Run as many as you like: each
    execution is advanced by one engine at a time, and a killed engine loses and doubles nothing."""
    from taskservice.cli.server_commands import load_settings, require_current_schema
    from taskservice.flows.engine import FlowEngine
    from taskservice.services import Services

    settings = load_settings()
    require_current_schema(settings)
    logging.basicConfig(level=loglevel.upper(), format="[%(asctime)s: %(levelname)s/engine] %(message)s")
    services = Services.build(settings)
    the_engine = FlowEngine(services)
    signal.signal(signal.SIGTERM, lambda *_: the_engine.stop.set())
    if ready_file is not None:
        ready_file.touch()
    try:
        the_engine.run_forever()
    except KeyboardInterrupt:
        the_engine.stop.set()
    finally:
        services.close()


# --- flows ------------------------------------------------------------------------------------------------------
@click.group()
def flows() -> None:
    """Deploy flows (workflows of functions) and start, watch, stop and redrive their executions.

    \b
    taskservice flows deploy media -f flow.yaml
    taskservice flows start media -e '{"video": "in/a.mov"}' --wait
    taskservice flows describe media EXECUTION
    """


json_option = click.option("--json", "as_json", is_flag=True, help="Print what the API answered, as JSON.")


@flows.command("deploy")
@click.argument("name")
@click.option("-f", "--file", "path", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="The definition (FDL) as YAML or JSON.")
@click.option("--description", default=None)
@click.option("--on-success", default=None, help="Destination URI for each succeeded execution's record.")
@click.option("--on-failure", default=None, help="Destination URI for each failed, stopped or timed-out one.")
@json_option
@click.pass_context
def deploy(ctx: click.Context, name: str, path: Path, description: str | None, on_success: str | None,
           on_failure: str | None, as_json: bool) -> None:
    """Deploy flow NAME from a definition file, or replace it (running executions keep their definition)."""
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise click.BadParameter(f"cannot read {path}: {exc}", param_hint="-f/--file") from None
    if not text.strip():
        raise click.BadParameter(f"{path} is empty", param_hint="-f/--file")
    with flow_errors(source=str(path)):
        flow = client_of(ctx).put_flow(name, text, description=description, on_success=on_success,
                                       on_failure=on_failure)
    if as_json:
        print_json(flow.raw)
    else:
        steps = len(flow.definition.get("steps", []))
        click.echo(f"flow {flow.name}: {steps} top-level step(s) from {path}"
                   + (f", timeout {flow.definition['timeoutSeconds']}s" if flow.definition.get("timeoutSeconds")
                      else ""))


def _counts(counts: dict[str, int]) -> str:
    return ", ".join(f"{status} {n}" for status, n in sorted(counts.items())) or "-"


@flows.command("list")
@json_option
@click.pass_context
def list_flows(ctx: click.Context, as_json: bool) -> None:
    """Deployed flows and how many executions each has in each status."""
    with flow_errors():
        items = client_of(ctx).list_flows()
    if as_json:
        print_json([f.raw for f in items])
        return
    print_table([f.raw for f in items], [
        ("NAME", lambda f: f["name"]), ("STEPS", lambda f: len(f["definition"].get("steps", []))),
        ("EXECUTIONS", lambda f: _counts(f["executions"])), ("UPDATED", lambda f: f["updatedAt"]),
        ("DESCRIPTION", lambda f: f["description"] or None)])


@flows.command("show")
@click.argument("name")
@json_option
@click.pass_context
def show(ctx: click.Context, name: str, as_json: bool) -> None:
    """Flow NAME: its destinations, execution counts and definition as deployed."""
    with flow_errors():
        flow = client_of(ctx).get_flow(name)
    if as_json:
        print_json(flow.raw)
        return
    click.echo(f"flow {flow.name}" + (f" — {flow.description}" if flow.description else ""))
    click.echo(f"on success {flow.on_success or '-'}   on failure {flow.on_failure or '-'}")
    click.echo(f"executions {_counts(flow.executions)}")
    click.echo(f"updated    {flow.updated_at}   created {flow.created_at}")
    click.echo("definition")
    for line in flow.source.splitlines():
        click.echo("  " + line)


@flows.command("delete")
@click.argument("name")
@click.pass_context
def delete(ctx: click.Context, name: str) -> None:
    """Delete flow NAME; executions already started run to their end."""
    with flow_errors():
        client_of(ctx).delete_flow(name)
    click.echo(f"deleted flow {name}")


@flows.command("start")
@click.argument("name")
@click.option("-e", "--event", default=None, help="The execution's input, a JSON object (default {}).")
@click.option("--event-file", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="The input from a JSON file.")
@click.option("--name", "execution", default=None, help="Execution name; a second start with it gets 409.")
@click.option("--wait", is_flag=True, help="Show progress and wait for the end (exit status 1 unless Succeeded).")
@json_option
@click.pass_context
def start(ctx: click.Context, name: str, event: str | None, event_file: Path | None, execution: str | None,
          wait: bool, as_json: bool) -> None:
    """Start an execution of flow NAME."""
    if event is not None and event_file is not None:
        raise click.UsageError("give either -e/--event or --event-file, not both")
    payload: Any = {}
    option = "-e/--event"
    if event is not None:
        payload = parse_json_option(event, option)
    elif event_file is not None:
        payload = parse_json_option(event_file.read_text(encoding="utf-8"), "--event-file")
        option = "--event-file"
    if not isinstance(payload, dict):
        raise click.BadParameter("an execution's input must be a JSON object, e.g. '{\"video\": \"a.mov\"}'",
                                 param_hint=option)
    client = client_of(ctx)
    with flow_errors():
        started = client.start_execution(name, payload, name=execution)
    if not wait:
        if as_json:
            print_json(started.to_api())
        else:
            click.echo(f"execution {started.execution_name} of {name}: {status_text(started.status)} "
                       f"(request {started.request_id})")
        return
    if not as_json:
        click.echo(f"execution {started.execution_name} of {name} started (request {started.request_id})")
    final = _wait(client, name, started.execution_name, quiet=as_json)
    if as_json:
        print_json(final.raw)
    else:
        click.echo(f"{status_text(final.status)} after {len(final.steps)} step run(s)")
        if final.succeeded:
            print_json(final.output)
        else:
            click.echo(f"{final.error_type or 'Error'}: {final.error or ''}", err=True)
    if not final.succeeded:
        ctx.exit(1)


def _wait(client: Client, flow: str, execution: str, *, quiet: bool) -> ExecutionInfo:
    """A live line on a terminal, one line per change otherwise (CI logs, pipes)."""
    tty = sys.stdout.isatty() and not quiet
    last = ""

    def show(e: ExecutionInfo) -> None:
        nonlocal last
        line = progress_text(e)
        if quiet or line == last:
            return
        last = line
        if tty:
            click.echo("\r\033[K" + line[:150], nl=False)
        else:
            click.echo(line)

    with flow_errors():
        final = client.wait_execution(flow, execution, progress=show)
    if tty:
        click.echo()
    return final


@flows.command("executions")
@click.option("--flow", default=None)
@click.option("--status", default=None, help="One or more, comma-separated (e.g. Failed,TimedOut).")
@click.option("--prefix", default=None, help="Execution-name prefix.")
@click.option("--since", default=None, help="ISO 8601 or epoch ms.")
@click.option("--until", default=None, help="ISO 8601 or epoch ms.")
@click.option("--limit", type=int, default=20, show_default=True)
@click.option("--cursor", default=None, help="next_cursor from a previous page.")
@json_option
@click.pass_context
def executions(ctx: click.Context, as_json: bool, **filters: Any) -> None:
    """Executions, newest first."""
    with flow_errors():
        page = client_of(ctx).list_executions(**filters)
    print_page({"items": [e.raw for e in page.items], "next_cursor": page.next_cursor}, [
        ("FLOW", lambda e: e["flow"]), ("EXECUTION", lambda e: e["executionName"]),
        ("STATUS", lambda e: e["status"]), ("STARTED", lambda e: e["startedAt"]),
        ("DURATION", lambda e: None if e["durationMs"] is None else f"{e['durationMs'] / 1000:.1f}s"),
        ("ERROR", lambda e: e["errorType"])], as_json=as_json)


@flows.command("describe")
@click.argument("name")
@click.argument("execution")
@json_option
@click.pass_context
def describe(ctx: click.Context, name: str, execution: str, as_json: bool) -> None:
    """Execution EXECUTION of flow NAME: status, input, output or error, and its steps as a tree."""
    with flow_errors():
        found = client_of(ctx).get_execution(name, execution)
    if as_json:
        print_json(found.raw)
    else:
        print_execution(found)


@flows.command("history")
@click.argument("name")
@click.argument("execution")
@click.option("--follow", "-f", is_flag=True, help="Keep printing new events until the execution ends.")
@json_option
@click.pass_context
def history(ctx: click.Context, name: str, execution: str, follow: bool, as_json: bool) -> None:
    """The execution's events, oldest first (with --json and --follow: one JSON object per line)."""
    client = client_of(ctx)
    after, collected = 0, []
    with flow_errors():
        ended = False
        while True:
            page = client.history(name, execution, after=after)
            for event, raw in zip(page.items, page.raw["items"], strict=True):
                if as_json and follow:
                    click.echo(json.dumps(raw, ensure_ascii=False, separators=(",", ":")))
                elif not as_json:
                    click.echo(history_line(event))
            collected += page.raw["items"]
            after = page.last
            if page.items:
                continue  # a full page may have more behind it
            if not follow or ended:
                break
            ended = client.get_execution(name, execution).ended  # one more read after the end: nothing missed
            if not ended:
                time.sleep(0.5)
    if as_json and not follow:
        print_json({"items": collected, "last": after})


@flows.command("stop")
@click.argument("name")
@click.argument("execution")
@json_option
@click.pass_context
def stop(ctx: click.Context, name: str, execution: str, as_json: bool) -> None:
    """Stop the execution: its running step invocations are stopped (process trees killed), then it ends
    Stopped. Durable: it happens even while engines or workers are down."""
    with flow_errors():
        found = client_of(ctx).stop_execution(name, execution)
    _said(found, as_json, "stop requested")


@flows.command("redrive")
@click.argument("name")
@click.argument("execution")
@json_option
@click.pass_context
def redrive(ctx: click.Context, name: str, execution: str, as_json: bool) -> None:
    """Resume a Failed, Stopped or TimedOut execution at the steps that did not succeed; succeeded steps keep
    their output and a foreach re-runs only its failed iterations."""
    with flow_errors():
        found = client_of(ctx).redrive_execution(name, execution)
    _said(found, as_json, "redriven")


def _said(started: ExecutionStarted, as_json: bool, what: str) -> None:
    if as_json:
        print_json(started.to_api())
    else:
        click.echo(f"execution {started.execution_name} of {started.flow}: {what}, now "
                   f"{status_text(started.status)}")
