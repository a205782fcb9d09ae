"""The "can this ever end?" check of one step list, run at parse time so a goto loop without an exit never runs.

Edges: a step goes on to the next one unless it ends (`end: true`, succeed, fail, or being last: all terminal) or
jumps (`goto`); a choice goes to each of its choices' and its default's targets; a task also to its catch targets.
Every step reachable from the first must be able to reach a terminal. A loop with an exit (a choice that can leave
it) passes; a loop every way out of which is a failure (an uncaught error, NoChoiceMatched) does not.
"""
from __future__ import annotations

from collections.abc import Sequence

from taskservice.flowdef.model import Step, StepType


def successors(steps: Sequence[Step], index: int) -> tuple[bool, list[int]]:
    """Whether the step at `index` can end its list right there, and the indices it can go on to."""
    step = steps[index]
    position = {s.name: i for i, s in enumerate(steps)}
    if step.type in (StepType.SUCCEED, StepType.FAIL):
        return True, []
    if step.type is StepType.CHOICE:
        targets = [c.goto for c in step.choices] + ([step.default_goto] if step.default_goto else [])
        return False, [position[t] for t in targets]
    catches = [position[c.goto] for c in step.catch]
    if step.end:
        return True, catches
    if step.goto is not None:
        return False, [position[step.goto], *catches]
    if index + 1 == len(steps):
        return True, catches
    return False, [index + 1, *catches]


def first_endless(steps: Sequence[Step]) -> Step | None:
    """A step reachable from the first that can never reach an end, or None when there is none."""
    edges: list[list[int]] = []
    can_end: set[int] = set()
    for index in range(len(steps)):
        terminal, targets = successors(steps, index)
        edges.append(targets)
        if terminal:
            can_end.add(index)
    callers: list[list[int]] = [[] for _ in steps]
    for source, targets in enumerate(edges):
        for target in targets:
            callers[target].append(source)
    frontier = list(can_end)
    while frontier:
        for caller in callers[frontier.pop()]:
            if caller not in can_end:
                can_end.add(caller)
                frontier.append(caller)
    reached, frontier = {0}, [0]
    while frontier:
        for target in edges[frontier.pop()]:
            if target not in reached:
                reached.add(target)
                frontier.append(target)
    stuck = sorted(reached - can_end)
    return steps[stuck[0]] if stuck else None
