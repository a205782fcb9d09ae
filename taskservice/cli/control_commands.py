"""`taskservice tasks stop | retry`: one invocation by id, or every invocation a filter selects."""
from __future__ import annotations

from typing import Any

import click

from taskservice.cli.output import api_errors, client_of, print_json, status_text

_SELECTION = ("function", "status", "prefix", "since", "until")


def _selection_options(command: Any) -> Any:
    for option in reversed([
        click.option("--function", "sel_function", default=None, help="Bulk: invocations of this function."),
        click.option("--status", "sel_status", default=None, help="Bulk: one or more statuses, comma-separated."),
        click.option("--prefix", "sel_prefix", default=None, help="Bulk: invocation-id prefix."),
        click.option("--since", "sel_since", default=None, help="Bulk: created at or after (ISO 8601 or epoch ms)."),
        click.option("--until", "sel_until", default=None, help="Bulk: created before (ISO 8601 or epoch ms)."),
        click.option("--yes", "-y", is_flag=True, help="Bulk: do not ask for confirmation."),
        click.option("--json", "as_json", is_flag=True, help="Print the API's answer as JSON."),
    ]):
        command = option(command)
    return command


def _act(ctx: click.Context, action: str, function: str | None, invocation_id: str | None, options: dict[str, Any],
         as_json: bool, yes: bool, **extra: Any) -> None:
    """One invocation when FUNCTION and INVOCATION_ID are given, otherwise the filter; never both, never neither."""
    selection = {name: options[f"sel_{name}"] for name in _SELECTION if options[f"sel_{name}"] is not None}
    client = client_of(ctx)
    if function is not None:
        if invocation_id is None:
            raise click.UsageError(f"give FUNCTION and INVOCATION_ID, or filters (--function, --status …) to {action} "
                                   "many")
        if selection:
            raise click.UsageError("give either FUNCTION INVOCATION_ID or filters, not both")
        with api_errors():
            inv = client.stop(function, invocation_id) if action == "stop" else \
                client.retry(function, invocation_id, **extra)
        if as_json:
            print_json(inv)
        else:
            click.echo(f"{action} {function}/{invocation_id}: now {status_text(inv['status'])}")
        return
    if not selection:
        raise click.UsageError(f"give FUNCTION INVOCATION_ID, or at least one filter to {action} many "
                               "(--function, --status, --prefix, --since, --until)")
    described = ", ".join(f"{k}={v}" for k, v in selection.items())
    if not yes:
        click.confirm(f"{action} every matching invocation ({described})?", abort=True)
    body: dict[str, Any] = dict(selection)
    if action == "retry":
        body["includeSucceeded"] = extra["include_succeeded"]
    with api_errors():
        result = client.bulk(action, body)
    if as_json:
        print_json(result)
        return
    verb = "stopped" if action == "stop" else "retried"
    click.echo(f"{verb} {result['changed']} invocation(s) matching {described}")
    for item in result["refused"]:
        click.echo(f"  not {verb}: {item['function']}/{item['invocationId']}: {item['reason']}", err=True)


@click.command("stop")
@click.argument("function", required=False)
@click.argument("invocation_id", required=False)
@_selection_options
@click.pass_context
def stop(ctx: click.Context, function: str | None, invocation_id: str | None, as_json: bool, yes: bool,
         **options: Any) -> None:
    """Stop an invocation (waiting: it never runs; running: its process tree is killed), or many by filter.

    \b
    taskservice tasks stop transcode inv_42
    taskservice tasks stop --function transcode --status Enqueued,Retrying --yes
    """
    _act(ctx, "stop", function, invocation_id, options, as_json, yes)


@click.command("retry")
@click.argument("function", required=False)
@click.argument("invocation_id", required=False)
@click.option("--include-succeeded", is_flag=True, help="Also re-run invocations that Succeeded.")
@_selection_options
@click.pass_context
def retry(ctx: click.Context, function: str | None, invocation_id: str | None, include_succeeded: bool,
          as_json: bool, yes: bool, **options: Any) -> None:
    """Re-run an ended invocation under the same id as a new attempt, or many by filter.

    \b
    taskservice tasks retry transcode inv_42
    taskservice tasks retry --function transcode --status Failed,Expired --since 2026-11-22T00:00:00Z --yes
    """
    _act(ctx, "retry", function, invocation_id, options, as_json, yes, include_succeeded=include_succeeded)
