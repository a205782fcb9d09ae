"""Sampling profiles of running service processes with py-spy, summarised as text.

py-spy attaches from outside (no code change, no restart) and `--nonblocking` does not pause the target, so a profiled
pass runs at nearly full speed. Two views of the same process answer different questions:
- "wall" (`--idle`): where an invocation's time goes, waiting included (Postgres round trips, the handler process);
- "cpu": what burns the cores, which is what bounds throughput on a 2-core machine that is already saturated.
Each profile is kept as collapsed stacks (`--format raw`, usable with flamegraph.pl) beside the run's other results.
"""
from __future__ import annotations

import shutil
import signal
import sys
import time
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from bench.procs import Launched, ProcessSet

SERVICE_PREFIXES = ("taskservice/", "workers/")  # py-spy prints paths relative to sys.path entries
ENTRY_POINT_SHARE = 0.95  # frames on (almost) every stack, like main(), say nothing: left out of the summary


def find_py_spy() -> str | None:
    candidate = Path(sys.executable).parent / "py-spy"
    return str(candidate) if candidate.exists() else shutil.which("py-spy")


@dataclass
class Recording:
    label: str
    mode: str  # "wall" | "cpu"
    output: Path
    launched: Launched


def start_recording(procs: ProcessSet, py_spy: str, pid: int, label: str, out_dir: Path, *, mode: str,
                    rate: int = 100) -> Recording:
    output = out_dir / f"profile-{label}-{mode}.txt"
    argv = [py_spy, "record", "--pid", str(pid), "--format", "raw", "--nonblocking", "--rate", str(rate),
            "--output", str(output)] + (["--idle"] if mode == "wall" else [])
    return Recording(label, mode, output, procs.start(f"py-spy-{label}-{mode}", argv))


def stop_recording(procs: ProcessSet, recording: Recording) -> None:
    """SIGINT makes py-spy write its samples and exit."""
    procs.stop(recording.launched, sig=signal.SIGINT, timeout_s=15.0)
    for _ in range(50):  # the file appears as py-spy exits
        if recording.output.exists():
            return
        time.sleep(0.1)


def _parse(path: Path) -> list[tuple[list[str], int]]:
    stacks = []
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        frames = [frame for frame in stack.split(";") if " (" in frame]
        if frames and count.isdigit():
            stacks.append((frames, int(count)))
    return stacks


def _location(frame: str) -> tuple[str, str, str]:
    """'func (pkg/mod.py:12)' → ('func', 'pkg/mod.py', '12')."""
    func, _, rest = frame.partition(" (")
    path, _, line = rest.rstrip(")").rpartition(":")
    return (func, path, line) if path else (func, rest.rstrip(")"), "")


def _package(path: str) -> str:
    head = path.split("/", 1)[0]
    return head if "/" in path else "stdlib/other"


def summarise(recording: Recording, *, top: int = 10) -> list[str]:
    """Inclusive share of the service's own functions, self share by package, and the hottest lines."""
    try:
        stacks = _parse(recording.output)
    except OSError:
        return [f"(no profile written at {recording.output})"]
    total = sum(count for _, count in stacks)
    if total == 0:
        return [f"(profile {recording.output.name} holds no samples)"]
    inclusive: Counter[str] = Counter()
    by_package: Counter[str] = Counter()
    leaves: Counter[str] = Counter()
    for frames, count in stacks:
        func, path, line = _location(frames[-1])
        leaves[f"{func} ({path}:{line})"] += count
        by_package[_package(path)] += count
        for name in {f"{f} ({p})" for f, p, _ in map(_location, frames) if p.startswith(SERVICE_PREFIXES)}:
            inclusive[name] += count
    what = "wall clock, waiting included" if recording.mode == "wall" else "on-CPU samples only"
    out = [f"{recording.label}, {recording.mode} profile: {total} samples ({what}; all threads)",
           "  inclusive, service code:"]
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in inclusive.most_common()
            if n < ENTRY_POINT_SHARE * total][:top]
    out.append("  self, by package: " + ", ".join(f"{pkg} {100 * n / total:.0f}%"
                                                 for pkg, n in by_package.most_common(8)))
    out.append("  hottest lines:")
    out += [f"    {100 * n / total:5.1f}%  {name}" for name, n in leaves.most_common(6)]
    return out



def stack_shares(recording: Recording, needles: Mapping[str, str], *, within: str) -> tuple[dict[str, float], int]:
    """Among the samples whose stack holds a frame containing `within` (say, one pass of a loop, so that idle time
    before and after the work does not dilute the figures), the share (0..1) that also hold a frame containing each
    needle ('basic_publish_confirm', 'outbox.py'). Answers "how much of the work is under X" for library frames the
    service summary leaves out. Returns the shares and how many samples they are taken over (0: no profile)."""
    try:
        stacks = _parse(recording.output)
    except OSError:
        return {}, 0
    busy = [(frames, count) for frames, count in stacks if any(within in frame for frame in frames)]
    total = sum(count for _, count in busy)
    if total == 0:
        return {}, 0
    return ({label: sum(count for frames, count in busy if any(needle in frame for frame in frames)) / total
             for label, needle in needles.items()}, total)
