"""Chart geometry for server-rendered inline SVG: no chart library, no JavaScript, nothing fetched from elsewhere.

The templates draw what these dataclasses describe; colours come from the stylesheet (one class per status).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from taskservice.console.formatting import duration
from taskservice.ledger.states import Status
from taskservice.ledger.stats import FunctionHealth, MinuteBucket

WIDTH, HEIGHT = 760, 220
LEFT, BOTTOM, TOP = 44, 22, 8


@dataclass(frozen=True)
class Bar:
    x: float
    y: float
    w: float
    h: float
    css: str
    title: str


@dataclass
class Chart:
    width: int
    height: int
    bars: list[Bar] = field(default_factory=list)
    y_ticks: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    x_labels: list[tuple[float, str]] = field(default_factory=list)  # (x, label)
    row_labels: list[tuple[float, str]] = field(default_factory=list)  # (y, label)
    empty: bool = True


def nice_ceiling(value: float) -> float:
    """1, 2, 5, 10, 20, 50…: a round top for an axis."""
    if value <= 0:
        return 1
    magnitude = 10 ** math.floor(math.log10(value))
    return next(m * magnitude for m in (1, 2, 5, 10) if m * magnitude >= value)


def count_ticks(value: int, *, intervals: int = 4) -> list[int]:
    """Axis ticks for a count: 0 up to the first round value at or above `value`, in at most `intervals` equal
    steps of 1, 2 or 5 × 10ⁿ. Whole steps only, because a count of 0.5 means nothing and would print as a second
    "0" (or "1") once labels are rounded; a peak of 0 still gets an axis up to 1."""
    value = max(value, 1)
    exponent = max(0, math.floor(math.log10(value / intervals)))
    while True:
        for mantissa in (1, 2, 5):
            step = mantissa * 10 ** exponent
            if math.ceil(value / step) <= intervals:
                return [i * step for i in range(math.ceil(value / step) + 1)]
        exponent += 1


def per_minute_chart(buckets: list[MinuteBucket]) -> Chart:
    """Stacked bars: invocations created per minute, split by their current status."""
    chart = Chart(WIDTH, HEIGHT)
    ticks = count_ticks(max((b.total for b in buckets), default=0))
    top = ticks[-1]
    plot_h, slot = HEIGHT - BOTTOM - TOP, (WIDTH - LEFT) / max(len(buckets), 1)
    for i, bucket in enumerate(buckets):
        x, y = LEFT + i * slot, float(HEIGHT - BOTTOM)
        for status in Status:
            n = bucket.counts.get(status, 0)
            if n:
                h = plot_h * n / top
                y -= h
                chart.bars.append(Bar(x + 1, y, max(slot - 2, 1), h, f"st-fill-{status.value}",
                                      f"{bucket.start:%H:%M} UTC · {status.value}: {n:,}"))
        if i % 10 == 0:
            chart.x_labels.append((x, f"{bucket.start:%H:%M}"))
    chart.y_ticks = [(HEIGHT - BOTTOM - plot_h * t / top, f"{t:,}") for t in ticks]
    chart.empty = not chart.bars
    return chart


def durations_chart(health: list[FunctionHealth]) -> Chart:
    """One row per function: its p95 duration as a light bar with its p50 as a dark bar over it."""
    rows = [h for h in health if h.p95_s is not None]
    row_h, left = 30, 170
    chart = Chart(WIDTH, max(len(rows), 1) * row_h + BOTTOM)
    top = nice_ceiling(max((h.p95_s or 0 for h in rows), default=0))
    span = WIDTH - left - 90
    for i, h in enumerate(rows):
        y = i * row_h + 6
        p50, p95 = h.p50_s or 0, h.p95_s or 0
        chart.bars.append(Bar(left, y, max(span * p95 / top, 1), row_h - 12, "p95",
                              f"{h.function} p95 {duration(p95)}"))
        chart.bars.append(Bar(left, y + 4, max(span * p50 / top, 1), row_h - 20, "p50",
                              f"{h.function} p50 {duration(p50)}"))
        chart.row_labels.append((y + row_h / 2 - 1, h.function))
        chart.x_labels.append((left + span * p95 / top + 6, f"{duration(p50)} / {duration(p95)}"))
    chart.empty = not rows
    return chart
