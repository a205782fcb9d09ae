"""The parsed, validated shape of a flow definition: frozen values the engine reads and never has to re-check.

One `Step` class carries every step type's fields (unused ones keep their defaults), so the engine matches on
`step.type` rather than on classes, and a definition compares equal to its own `to_json()` parsed again.

Step paths name a step anywhere in a definition: its name at the top level, `P/<i>/<name>` inside branch i of the
parallel step P, `F/*/<name>` inside the body of the foreach step F (the engine writes the iteration index in place
of `*` at run time: `F/3/encode`); nested to any depth the limits allow.
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from enum import StrEnum
from typing import Any

from taskservice.flowdef.conditions import Condition
from taskservice.flowdef.limits import DEFAULT_MAX_CONCURRENCY


class StepType(StrEnum):
    """A StrEnum (so a str, as the FDL spells it), like taskservice.statuses."""

    TASK = "task"
    PASS = "pass"
    WAIT = "wait"
    CHOICE = "choice"
    PARALLEL = "parallel"
    FOREACH = "foreach"
    SUCCEED = "succeed"
    FAIL = "fail"


@dataclass(frozen=True)
class Mapping:
    """`target` (a dotted name) gets `source`: a `$`-path string resolved at run time, or a literal."""

    target: str
    source: Any


@dataclass(frozen=True)
class RetryRule:
    errors: tuple[str, ...]
    interval_s: float = 1.0
    max_attempts: int = 3
    multiplier: float = 2.0


@dataclass(frozen=True)
class CatchRule:
    errors: tuple[str, ...]
    goto: str


@dataclass(frozen=True)
class Choice:
    condition: Condition
    goto: str


@dataclass(frozen=True)
class Step:
    name: str
    type: StepType
    end: bool = False
    input_mappings: tuple[Mapping, ...] = ()
    output_mappings: tuple[Mapping, ...] = ()
    function: str | None = None  # task: the <name> of resourceArn "function:<name>"
    retry: tuple[RetryRule, ...] = ()
    catch: tuple[CatchRule, ...] = ()
    duration_s: float | str | None = None  # wait: seconds, or a `$` path to them resolved at run time
    until: str | None = None  # wait: ISO-8601 with a zone, or a `$` path to one
    choices: tuple[Choice, ...] = ()
    default_goto: str | None = None
    branches: tuple[tuple[Step, ...], ...] = ()  # parallel
    collection: str | None = None  # foreach: the path of the list to iterate
    item_name: str = "item"
    index_name: str = "index"
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    steps: tuple[Step, ...] = ()  # foreach body
    error: str | None = None  # fail
    cause: str | None = None
    goto: str | None = None  # a plain jump after the step (task, pass, wait, parallel, foreach)

    def to_json(self) -> dict[str, Any]:
        """The canonical FDL form: defaults of optional blocks spelled out, empty and unused fields left out."""
        out: dict[str, Any] = {"name": self.name, "type": self.type.value}
        if self.type is StepType.TASK:
            out["resourceArn"] = f"function:{self.function}"
        elif self.type is StepType.WAIT:
            if self.duration_s is not None:
                out["duration"] = self.duration_s
            else:
                out["until"] = self.until
        elif self.type is StepType.CHOICE:
            out["choices"] = [{"condition": c.condition.source, "goto": c.goto} for c in self.choices]
            if self.default_goto is not None:
                out["default"] = {"goto": self.default_goto}
        elif self.type is StepType.PARALLEL:
            out["branches"] = [{"steps": [s.to_json() for s in branch]} for branch in self.branches]
        elif self.type is StepType.FOREACH:
            out["iterationMapping"] = {"collection": self.collection, "item": self.item_name,
                                       "index": self.index_name}
            out["maxConcurrency"] = self.max_concurrency
            out["steps"] = [s.to_json() for s in self.steps]
        elif self.type is StepType.FAIL:
            out["error"] = self.error
            if self.cause is not None:
                out["cause"] = self.cause
        if self.retry:
            out["retry"] = [{"errors": list(r.errors), "intervalSeconds": r.interval_s,
                             "maxAttempts": r.max_attempts, "multiplier": r.multiplier} for r in self.retry]
        if self.catch:
            out["catch"] = [{"errors": list(c.errors), "goto": c.goto} for c in self.catch]
        if self.input_mappings:
            out["inputMappings"] = [{"target": m.target, "source": m.source} for m in self.input_mappings]
        if self.output_mappings:
            out["outputMappings"] = [{"target": m.target, "source": m.source} for m in self.output_mappings]
        if self.goto is not None:
            out["goto"] = self.goto
        if self.end:
            out["end"] = True
        return out


@dataclass(frozen=True)
class FlowDefinition:
    version: str
    timeout_s: int | None
    steps: tuple[Step, ...]

    def to_json(self) -> dict[str, Any]:
        """Canonical FDL-shaped JSON: `parse_definition(d.to_json()) == d`."""
        out: dict[str, Any] = {"version": self.version, "type": "flow"}
        if self.timeout_s is not None:
            out["timeoutSeconds"] = self.timeout_s
        out["steps"] = [s.to_json() for s in self.steps]
        return out

    def step_at(self, path: str) -> Step:
        """The step at a step path (`encode`, `P/0/encode`, `F/*/encode` or `F/3/encode`); KeyError if none."""
        parts = path.split("/")
        if len(parts) % 2 == 0:
            raise KeyError(path)
        steps = self.steps
        step = _named(steps, parts[0], path)
        for index, name in zip(parts[1::2], parts[2::2], strict=True):
            if step.type is StepType.PARALLEL and index.isdigit() and int(index) < len(step.branches):
                steps = step.branches[int(index)]
            elif step.type is StepType.FOREACH and (index == "*" or index.isdigit()):
                steps = step.steps
            else:
                raise KeyError(path)
            step = _named(steps, name, path)
        return step


def _named(steps: Sequence[Step], name: str, path: str) -> Step:
    for step in steps:
        if step.name == name:
            return step
    raise KeyError(path)


def next_step(steps: Sequence[Step], step: Step) -> Step | None:
    """The step after `step` in its list, honouring `step.goto`; None when the list ends there.

    That is: after `end: true`, after the last step, and after succeed and fail steps. A choice step's successor
    depends on its conditions, which the engine evaluates, so it is None here too.
    """
    if step.end or step.type in (StepType.SUCCEED, StepType.FAIL, StepType.CHOICE):
        return None
    if step.goto is not None:
        return _named(steps, step.goto, step.goto)
    for index, candidate in enumerate(steps):
        if candidate.name == step.name:
            return steps[index + 1] if index + 1 < len(steps) else None
    raise ValueError(f"step {step.name!r} is not in this list")
