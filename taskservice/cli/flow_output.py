"""Printing flows and executions for people: the step tree of `flows describe`, history lines, and the progress
line of `flows start --wait`. Kept apart from the commands so each reads in one screen."""
from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import click

from taskservice.cli.output import api_errors, status_text
from taskservice.client import ConflictError, ValidationError
from taskservice.flow_client import ExecutionInfo, HistoryEvent, StepInfo

LIVE_STEP = frozenset({"Running", "Waiting", "Retrying"})


@contextmanager
def flow_errors(source: str | None = None) -> Iterator[None]:
    """api_errors, plus what a flow's errors carry: the step path of an invalid definition and the execution a
    taken name belongs to. `source` names the file the definition came from."""
    with api_errors():
        try:
            yield
        except ValidationError as exc:
            if exc.path is None:
                raise
            message = str(exc.body.get("error", {}).get("message", exc))
            if exc.path and message.startswith(f"{exc.path}: "):
                message = message[len(exc.path) + 2:]
            what = f"the flow in {source}" if source else "the flow"
            where = f"is invalid at step path {exc.path}" if exc.path else "was refused"
            raise click.ClickException(f"{what} {where}: {message} (422; nothing was deployed)") from None
        except ConflictError as exc:
            existing = exc.existing_execution
            if existing is None:
                raise
            raise click.ClickException(
                f"execution {existing.execution_name} of flow {existing.flow} already exists (409): it is "
                f"{existing.status}, request {existing.request_id}; choose another --name") from None


def compact(value: Any, limit: int = 300) -> str:
    text = json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f"… ({len(text)} chars)"


def _tree_key(steps: list[StepInfo]) -> Callable[[tuple[int, StepInfo]], tuple[int, ...]]:
    """Orders step runs so each sits under the parallel or foreach that holds it, iterations by index, and
    otherwise in the order they were entered: `F`, `F/0/a`, `F/0/b`, `F/1/a`, `merge`."""
    first: dict[str, int] = {}
    for n, step in enumerate(steps):
        first.setdefault(step.path, n)

    def key(entry: tuple[int, StepInfo]) -> tuple[int, ...]:
        n, step = entry
        parts = step.path.split("/")
        out: list[int] = []
        for depth in range(0, len(parts) - 1, 2):
            container = "/".join(parts[:depth + 1])
            out += [first.get(container, n), int(parts[depth + 1]) if parts[depth + 1].isdigit() else 0]
        return (*out, n)

    return key


def step_lines(steps: list[StepInfo]) -> list[str]:
    """One line per step run, indented by how deep it is nested; a nested step is labelled with its branch or
    iteration index (`3/encode`)."""
    ordered = [s for _, s in sorted(enumerate(steps), key=_tree_key(steps))]
    labels = []
    for step in ordered:
        parts = step.path.split("/")
        label = "/".join(parts[-2:]) if len(parts) > 1 else parts[0]
        labels.append("  " * step.depth + label + (f" (visit {step.visit})" if step.visit > 1 else ""))
    width = max([len(label) for label in labels] + [4])
    lines = []
    for label, step in zip(labels, ordered, strict=True):
        cells = [label.ljust(width), step.type.ljust(8), status_text(step.status) + " " * (10 - len(step.status))]
        extra = []
        if step.type == "task":
            extra.append(f"attempts {step.attempts}")
        if step.items is not None:
            extra.append(f"{step.items} item(s)")
        if step.invocation_id:
            extra.append(f"invocation {step.function}/{step.invocation_id}")
        if step.error_type or step.error:
            first_line = (step.error or "").splitlines()[0] if step.error else ""
            extra.append(click.style(f"{step.error_type or 'Error'}: {first_line}", fg="red"))
        lines.append("  ".join(cells) + "  " + "  ".join(extra))
    return [line.rstrip() for line in lines]


def print_execution(e: ExecutionInfo) -> None:
    click.echo(f"{e.flow}/{e.name}  {status_text(e.status)}  request {e.request_id}"
               + (f"  redriven {e.redrives}x" if e.redrives else ""))
    duration = "" if e.duration_ms is None else f"   ({e.duration_ms / 1000:.1f}s)"
    click.echo(f"started   {e.started_at}   finished {e.finished_at or '-'}{duration}")
    click.echo("input     " + compact(e.input))
    if e.status == "Succeeded":
        click.echo("output    " + compact(e.output))
    if e.error or e.error_type:
        click.echo(f"error     {e.error_type or 'Error'}: {e.error or ''}")
    click.echo("steps" if e.steps else "steps     (none entered yet)")
    for line in step_lines(e.steps):
        click.echo("  " + line)


def history_line(event: HistoryEvent) -> str:
    detail = f"  {compact(event.detail, 200)}" if event.detail else ""
    return f"{event.id:>6}  {event.at}  {event.type:<22} {event.path or '-'}{detail}"


def progress_text(e: ExecutionInfo, limit: int = 4) -> str:
    """`Running   3/7 steps done  now: F/0/encode, F/1/encode`: what `flows start --wait` shows."""
    done = sum(1 for s in e.steps if s.status not in LIVE_STEP)
    live = [s.path for s in e.steps if s.status in LIVE_STEP and s.type not in ("parallel", "foreach")]
    now = ", ".join(live[:limit]) + (f" (+{len(live) - limit} more)" if len(live) > limit else "")
    return f"{e.status:<9} {done}/{len(e.steps)} steps done" + (f"  now: {now}" if now else "")
