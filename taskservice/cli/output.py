"""Printing for the client commands: tables for people, --json for scripts, one error style."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

import click

from taskservice.client import ApiError, Client
from taskservice.errors import ClientError

STATUS_COLOURS = {"Succeeded": "green", "Failed": "red", "Invalid": "red", "Expired": "yellow", "Stopped": "yellow",
                  "Running": "cyan", "Retrying": "magenta", "Stopping": "magenta", "Enqueued": "blue",
                 "TimedOut": "yellow", "Caught": "yellow", "Waiting": "blue"}  # the last three: flows


def client_of(ctx: click.Context) -> Client:
    return Client(ctx.obj["api_url"], token=ctx.obj.get("token"), on_retry=_say_retrying)


def _say_retrying(reason: str, wait_s: float) -> None:
    click.echo(f"{reason}; trying again in {wait_s:.1f}s (same request, safe to repeat)", err=True)


@contextmanager
def api_errors() -> Iterator[None]:
    """Turn API and connection errors into one clear line and exit status 1."""
    try:
        yield
    except ApiError as exc:
        raise click.ClickException(f"{exc.code} ({exc.status}): {exc.body.get('error', {}).get('message', exc)}") \
            from None
    except ClientError as exc:
        raise click.ClickException(exc.message) from None


def status_text(status: str) -> str:
    return click.style(status, fg=STATUS_COLOURS.get(status))


def print_json(value: Any) -> None:
    click.echo(json.dumps(value, indent=2, ensure_ascii=False))


def print_table(rows: Sequence[dict[str, Any]], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]]) -> None:
    cells = [[str(get(row) if get(row) is not None else "-") for _, get in columns] for row in rows]
    widths = [max([len(title)] + [len(c[i]) for c in cells]) for i, (title, _) in enumerate(columns)]
    click.echo("  ".join(click.style(title.ljust(w), bold=True) for (title, _), w in zip(columns, widths, strict=True)))
    for line in cells:
        out = []
        for (title, _), w, cell in zip(columns, widths, line, strict=True):
            text = cell.ljust(w)
            out.append(status_text(cell) + " " * (w - len(cell)) if title == "STATUS" else text)
        click.echo("  ".join(out).rstrip())


def print_page(page: dict[str, Any], columns: Sequence[tuple[str, Callable[[dict[str, Any]], Any]]], *,
                as_json: bool) -> None:
    """One page of a keyset-paginated list: JSON as the API sent it, or a table and how to ask for the next page."""
    if as_json:
        print_json(page)
        return
    print_table(page["items"], columns)
    if page["next_cursor"]:
        click.echo(f"more: --cursor {page['next_cursor']}")


def parse_json_option(value: str, option: str) -> Any:
    try:
        return json.loads(value)
    except ValueError as exc:
        raise click.BadParameter(f"not valid JSON ({exc}); quote it, e.g. -e '{{\"key\": 1}}'",
                                 param_hint=option) from None
