"""The step graph of a flow as server-side SVG: one box per step of the definition, arrows for what can follow it,
each box coloured (and labelled, so colour is never the only cue) by the status of its step run or runs.

Layout is a column per step list, top to bottom: a step's `next` (or a `goto`/choice/catch to the step right
below it) is a straight arrow, any other jump an arrow routed in a lane of its own to the right of the column. A
parallel is a frame with its branches side by side; a foreach a frame around one copy of its body, with a counter
of its iterations. Boxes inside a foreach stand for every iteration's run of that step, so they show the most
pressing status among those runs and link to the iteration list below the graph; a task outside a foreach links
to its (latest attempt's) invocation. No JavaScript, no library: the console's live view swaps the whole drawing.
"""
from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from markupsafe import Markup, escape

from taskservice.flowdef import FlowDefinition, Step, StepType
from taskservice.ledger.flows import StepRun

BOX_W, BOX_H = 200, 48
V_GAP, H_GAP = 38, 28
PAD, HEADER = 14, 48
GROUP_MIN_W = 280
LANE, LABEL_ROOM = 18, 110
MARGIN = 16

NOT_RUN = "NotRun"
#: An aggregated box (a step inside a foreach) shows the first of these its runs have: what needs a look first.
PRIORITY = ("Running", "Retrying", "Waiting", "Failed", "Stopped", "Caught", "Succeeded")
LIVE = frozenset({"Running", "Retrying", "Waiting"})

InvocationUrl = Callable[[str, str], str]


def status_label(status: str) -> str:
    return "not run" if status == NOT_RUN else status


def iterations_anchor(template: str) -> str:
    """The id of the iteration list of the foreach at `template` (a step path with `*` for foreach indices)."""
    return "iterations-" + re.sub(r"[^A-Za-z0-9_-]", "-", template)


def template_path(definition: FlowDefinition, path: str) -> str | None:
    """`F/3/encode` → `F/*/encode`: a run's path with every foreach index replaced by `*` (parallel branch numbers
    stay, they are part of the definition); None when the path does not fit the definition."""
    parts = path.split("/")
    if len(parts) % 2 == 0:
        return None
    steps: Sequence[Step] = definition.steps
    step = _named(steps, parts[0])
    out = [parts[0]]
    for index, name in zip(parts[1::2], parts[2::2], strict=True):
        if step is None:
            return None
        if step.type is StepType.FOREACH and index.isdigit():
            steps, index = step.steps, "*"
        elif step.type is StepType.PARALLEL and index.isdigit() and int(index) < len(step.branches):
            steps = step.branches[int(index)]
        else:
            return None
        step = _named(steps, name)
        out += [index, name]
    return "/".join(out) if step is not None else None


def _named(steps: Sequence[Step], name: str) -> Step | None:
    return next((s for s in steps if s.name == name), None)


@dataclass(frozen=True)
class IterationCount:
    total: int = 0
    done: int = 0
    running: int = 0
    failed: int = 0
    stopped: int = 0

    def text(self) -> str:
        """'12/20 done, 2 running, 1 failed': the parts that are zero are left out, except done."""
        parts = [f"{self.done}/{self.total} done"]
        parts += [f"{n} {word}" for n, word in ((self.running, "running"), (self.failed, "failed"),
                                                 (self.stopped, "stopped")) if n]
        return ", ".join(parts)


@dataclass
class Progress:
    """What an execution has done, keyed by template path: its step runs and its iteration frames' statuses."""

    runs: dict[str, list[StepRun]] = field(default_factory=dict)
    iterations: dict[str, IterationCount] = field(default_factory=dict)

    @classmethod
    def of(cls, definition: FlowDefinition, runs: Sequence[StepRun], frames: dict[str, str]) -> Progress:
        progress = cls()
        for run in runs:
            template = template_path(definition, run.path)
            if template is not None:
                progress.runs.setdefault(template, []).append(run)
        for template, foreach_runs in progress.runs.items():
            if foreach_runs[0].type != StepType.FOREACH.value:
                continue
            counts: Counter[str] = Counter()
            total = 0
            for run in foreach_runs:
                total += run.items or 0
                counts.update(frames.get(f"{run.path}/{k}", NOT_RUN) for k in range(run.items or 0))
            progress.iterations[template] = IterationCount(total=total, done=counts["Succeeded"],
                                                           running=counts["Running"], failed=counts["Failed"],
                                                           stopped=counts["Stopped"])
        return progress

    def status(self, template: str) -> str:
        statuses = {r.status for r in self.runs.get(template, ())}
        return next((s for s in PRIORITY if s in statuses), NOT_RUN if not statuses else sorted(statuses)[0])


@dataclass(frozen=True)
class _Link:
    source: int
    target: int
    kind: str  # next, goto, choice, default, catch
    label: str


def _links(steps: Sequence[Step]) -> list[_Link]:
    """Every arrow out of every step of one list, as flowdef/graph.py reads the same definition."""
    position = {s.name: i for i, s in enumerate(steps)}
    out: list[_Link] = []
    for i, step in enumerate(steps):
        if step.type is StepType.CHOICE:
            out += [_Link(i, position[c.goto], "choice", c.condition.source) for c in step.choices]
            if step.default_goto:
                out.append(_Link(i, position[step.default_goto], "default", "default"))
            continue
        if step.type in (StepType.SUCCEED, StepType.FAIL):
            continue
        if step.goto is not None:
            out.append(_Link(i, position[step.goto], "goto", "goto"))
        elif not step.end and i + 1 < len(steps):
            out.append(_Link(i, i + 1, "next", ""))
        out += [_Link(i, position[c.goto], "catch", "catch " + ", ".join(c.errors)) for c in step.catch]
    return out


def _split(links: list[_Link]) -> tuple[dict[int, list[_Link]], list[_Link]]:
    """Straight arrows (to the step right below, one per source, labels joined) and the ones that need a lane."""
    straight: dict[int, list[_Link]] = {}
    lanes: list[_Link] = []
    for link in links:
        if link.target == link.source + 1:
            straight.setdefault(link.source, []).append(link)
        else:
            lanes.append(link)
    return straight, lanes


def _size(step: Step) -> tuple[float, float]:
    if step.type is StepType.PARALLEL:
        sizes = [_list_size(branch) for branch in step.branches]
        width = sum(w for w, _ in sizes) + H_GAP * (len(sizes) - 1) + 2 * PAD
        return max(width, GROUP_MIN_W), HEADER + max(h for _, h in sizes) + PAD
    if step.type is StepType.FOREACH:
        width, height = _list_size(step.steps)
        return max(width + 2 * PAD, GROUP_MIN_W), HEADER + height + PAD
    return BOX_W, BOX_H


def _list_size(steps: Sequence[Step]) -> tuple[float, float]:
    sizes = [_size(s) for s in steps]
    content_w, lanes = max(w for w, _ in sizes), _split(_links(steps))[1]
    return (content_w + _lane_room(lanes), sum(h for _, h in sizes) + V_GAP * (len(sizes) - 1))


def _lane_room(lanes: list[_Link]) -> float:
    return LANE * len(lanes) + (LABEL_ROOM if any(link.label for link in lanes) else 0) + (LANE if lanes else 0)


def _cut(text: str, limit: int) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def _num(value: float) -> str:
    return f"{value:.1f}".rstrip("0").rstrip(".")


class _Drawing:
    def __init__(self, progress: Progress, invocation_url: InvocationUrl) -> None:
        self.progress = progress
        self.invocation_url = invocation_url
        self.parts: list[str] = []  # in drawing order: a frame, then what it holds, then the arrows between them

    # --- lists ----------------------------------------------------------------------------------------------------
    def place_list(self, steps: Sequence[Step], scope: str, x: float, y: float, in_foreach: str | None) -> None:
        sizes = [_size(s) for s in steps]
        content_w = max(w for w, _ in sizes)
        cx = x + content_w / 2
        rects: list[tuple[float, float, float, float]] = []
        top = y
        for step, (w, h) in zip(steps, sizes, strict=True):
            rects.append((cx - w / 2, top, w, h))
            self.place_step(step, f"{scope}/{step.name}" if scope else step.name, cx - w / 2, top, w, h, in_foreach)
            top += h + V_GAP
        straight, lanes = _split(_links(steps))
        for source, links in straight.items():
            _, sy, _, sh = rects[source]
            ty = rects[source + 1][1]
            label = " / ".join(link.label for link in links if link.label)
            self._edge(f"M{_num(cx)},{_num(sy + sh)} V{_num(ty - 2)}", links[0].kind, label, cx + 6,
                       (sy + sh + ty) / 2 + 4)
        for k, link in enumerate(lanes):
            sx, sy, sw, sh = rects[link.source]
            tx, ty, tw, th = rects[link.target]
            lane_x = x + content_w + LANE * (k + 1)
            nudge = (k % 3 - 1) * 6
            y1, y2 = sy + min(sh, HEADER) / 2 + nudge, ty + min(th, HEADER) / 2 - nudge
            self._edge(f"M{_num(sx + sw)},{_num(y1)} H{_num(lane_x)} V{_num(y2)} H{_num(tx + tw + 2)}", link.kind,
                       link.label, lane_x + 4, (y1 + y2) / 2 + 4)

    def _edge(self, d: str, kind: str, label: str, lx: float, ly: float) -> None:
        title = f"<title>{escape(kind)}{': ' + escape(label) if label else ''}</title>" if label else ""
        self.parts.append(f'<path class="edge edge-{kind}" d="{d}" marker-end="url(#arrow)">{title}</path>')
        if label:
            self.parts.append(f'<text class="edge-label" x="{_num(lx)}" y="{_num(ly)}">'
                              f'{escape(_cut(label, 22))}<title>{escape(label)}</title></text>')

    # --- steps ----------------------------------------------------------------------------------------------------
    def place_step(self, step: Step, template: str, x: float, y: float, w: float, h: float,
                   in_foreach: str | None) -> None:
        if step.type is StepType.PARALLEL:
            self._group(step, template, x, y, w, h, f"{len(step.branches)} branches side by side")
            inner = sum(_list_size(b)[0] for b in step.branches) + H_GAP * (len(step.branches) - 1)
            bx = x + (w - inner) / 2
            for i, branch in enumerate(step.branches):
                self.place_list(branch, f"{template}/{i}", bx, y + HEADER, in_foreach)
                bx += _list_size(branch)[0] + H_GAP
        elif step.type is StepType.FOREACH:
            count = self.progress.iterations.get(template, IterationCount())
            self._group(step, template, x, y, w, h, count.text(), counter=True)
            body_w = _list_size(step.steps)[0]
            self.place_list(step.steps, f"{template}/*", x + (w - body_w) / 2, y + HEADER, template)
        else:
            self._leaf(step, template, x, y, w, h, in_foreach)

    def _leaf(self, step: Step, template: str, x: float, y: float, w: float, h: float,
              in_foreach: str | None) -> None:
        runs = self.progress.runs.get(template, [])
        status = self.progress.status(template)
        kind = step.type.value + (f" {step.function}" if step.function else "")
        href = None
        if in_foreach is not None:
            counts = Counter(r.status for r in runs)
            detail = ", ".join(f"{n} {s}" for s, n in sorted(counts.items())) or "no iteration has run it"
            meta = f"{status_label(status)} · {len(runs)} run{'s' if len(runs) != 1 else ''}"
            if runs:
                href = "#" + iterations_anchor(in_foreach)
        else:
            run = runs[0] if runs else None
            detail = status_label(status)
            meta = status_label(status)
            if run is not None:
                if run.attempts > 1:
                    meta += f" · attempt {run.attempts}"
                    detail += f", {run.attempts} attempts"
                if run.error_type:
                    detail += f", {run.error_type}"
                if run.function and run.invocation_id:
                    href = self.invocation_url(run.function, run.invocation_id)
                    detail += f"; invocation {run.invocation_id}"
        title = f"{step.name} ({kind}): {detail}"
        body = (f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="8"/>'
                f'<text class="name" x="{_num(x + 10)}" y="{_num(y + 19)}">{escape(_cut(step.name, 24))}</text>'
                f'<text class="meta" x="{_num(x + 10)}" y="{_num(y + 37)}">'
                f'{escape(_cut(step.type.value + " · " + meta, 30))}</text>')
        if href is not None:
            body = f'<a href="{escape(href)}">{body}</a>'
        self.parts.append(f'<g class="step s-{escape(status)}" data-path="{escape(template)}" '
                          f'data-status="{escape(status)}"><title>{escape(title)}</title>{body}</g>')

    def _group(self, step: Step, template: str, x: float, y: float, w: float, h: float, line: str,
               *, counter: bool = False) -> None:
        status = self.progress.status(template)
        title = f"{step.name} ({step.type.value}): {status_label(status)}; {line}"
        if step.type is StepType.FOREACH:
            title += f"; over {step.collection}, at most {step.max_concurrency} at once"
        self.parts.append(
            f'<g class="step group s-{escape(status)}" data-path="{escape(template)}" data-status="{escape(status)}">'
            f'<title>{escape(title)}</title>'
            f'<rect x="{_num(x)}" y="{_num(y)}" width="{_num(w)}" height="{_num(h)}" rx="12"/>'
            f'<text class="name" x="{_num(x + 12)}" y="{_num(y + 19)}">{escape(_cut(step.name, 28))}</text>'
            f'<text class="meta status" x="{_num(x + w - 12)}" y="{_num(y + 19)}" text-anchor="end">'
            f'{escape(step.type.value)} · {escape(status_label(status))}</text>'
            f'<text class="meta{" counter" if counter else ""}" x="{_num(x + 12)}" y="{_num(y + 37)}">'
            f'{escape(line)}</text></g>')


def render(definition: FlowDefinition, progress: Progress, invocation_url: InvocationUrl, *, label: str) -> Markup:
    """The whole <svg>: an arrowhead marker, then every box (a <title> on each) and arrow."""
    width, height = _list_size(definition.steps)
    drawing = _Drawing(progress, invocation_url)
    drawing.place_list(definition.steps, "", MARGIN, MARGIN, None)
    w, h = _num(width + 2 * MARGIN), _num(height + 2 * MARGIN)
    return Markup(
        f'<svg class="flow-graph" xmlns="http://www.w3.org/2000/svg" width="{w}" height="{h}" '
        f'viewBox="0 0 {w} {h}" aria-label="{escape(label)}">'
        '<defs><marker id="arrow" viewBox="0 0 10 10" refX="9" refY="5" markerWidth="7" markerHeight="7" '
        'orient="auto-start-reverse"><path d="M0,0 L10,5 L0,10 z" class="arrowhead"/></marker></defs>'
        + "".join(drawing.parts) + "</svg>")
