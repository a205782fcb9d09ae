"""Figures, the printed table and the JSON record of a run.

A figure carries its own target and verdict so that the table, the JSON file and the README say the same thing.
"""
from __future__ import annotations

import json
import math
import sys
import traceback
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any


@dataclass
class Figure:
    phase: str  # "1", "2", "3": the brief's numbering
    label: str
    value: float | None
    unit: str
    detail: str = ""
    target: str = ""
    met: bool | None = None

    def value_text(self) -> str:
        if self.value is None:
            return "n/a"
        if self.unit == "%":
            return f"{self.value:.0f} %" if abs(self.value) >= 1 else f"{self.value:.2f} %"  # 0.2 %, not "0 %"
        if isinstance(self.value, int):  # a count: 0 invocations, not 0.0
            return f"{self.value:,} {self.unit}".rstrip()
        number = f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:.1f}"
        return f"{number} {self.unit}"

    def verdict(self) -> str:
        return "" if self.met is None else ("met" if self.met else "NOT met")


@dataclass
class Report:
    figures: list[Figure] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # CPU breakdowns, profiles, warnings: printed after the table

    def add(self, figure: Figure) -> Figure:
        self.figures.append(figure)
        return figure

    def note(self, text: str) -> None:
        self.notes.append(text)

    def table(self) -> str:
        rows = [("#", "figure", "value", "target", "verdict")]
        figures = sorted(self.figures, key=lambda f: f.phase)  # stable: phases run 1, 3, 2 but print in order
        rows += [(f.phase, f.label, f.value_text(), f.target, f.verdict()) for f in figures]
        widths = [max(len(row[i]) for row in rows) for i in range(5)]
        lines = []
        for index, row in enumerate(rows):
            lines.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(row)).rstrip())
            if index == 0:
                lines.append("  ".join("-" * w for w in widths))
        details = [f"  [{f.phase}] {f.label}: {f.detail}" for f in figures if f.detail]
        return "\n".join(lines + ([""] + details if details else []))

    def sorted_notes(self) -> list[str]:
        return sorted(self.notes, key=lambda note: note[:3])

    def save(self, path: Path, header: dict[str, str]) -> None:
        path.write_text(json.dumps({"header": header, "figures": [asdict(f) for f in self.figures],
                                    "notes": self.notes}, indent=2) + "\n")


def percentile(values: Sequence[float], p: float) -> float | None:
    """Nearest-rank percentile (p in 0..100): an observed value, never an interpolation."""
    if not values:
        return None
    ordered = sorted(values)
    rank = max(1, math.ceil(p / 100 * len(ordered)))
    return ordered[rank - 1]


def print_report(title: str, info: dict[str, Any], report: Report, results_dir: Path, *, artifacts: str) -> None:
    """The run's header, the figures table and the notes, then save results.json beside the run's logs."""
    print()
    print(title)
    for key, value in info.items():
        print(f"  {key:8} {value}")
    print()
    print(report.table())
    if report.notes:
        print()
        for note in report.sorted_notes():
            print(note)
    report.save(results_dir / "results.json", info)
    print(f"\n{artifacts} and results.json: {results_dir}")


def guarded_run(body: Callable[[], None], teardown: Callable[[], None]) -> int:
    """Run a bench's phases and always tear down, keeping what was measured before a failure; returns the exit
    status (130 after Ctrl-C, 1 after an error)."""
    from bench.procs import BenchError

    status = 0
    try:
        body()
    except KeyboardInterrupt:
        print("\ninterrupted: stopping everything the bench started", file=sys.stderr)
        status = 130
    except BenchError as exc:
        print(f"\nbench failed: {exc}", file=sys.stderr)
        status = 1
    except Exception:  # still tear down and print what was measured before the failure
        traceback.print_exc()
        status = 1
    finally:
        teardown()
    return status
