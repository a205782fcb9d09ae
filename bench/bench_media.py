"""Media benchmark: one ffmpeg transcode against split → parallel transcode → merge, the split-merge both as the
`media-split-merge` flow and as the waiting parent main had before flows, in one run.

    .venv/bin/python bench/bench_media.py [--seconds 120] [--size 1280x720] [--segment-seconds 10] [--workers 2]

On Postgres + RabbitMQ with a local-directory object store (so storage costs stay out of the comparison), it
generates a clip (testsrc2 + sine), then measures with one `taskservice worker`:
1. bare ffmpeg: the same encode run directly by the bench, no service;
2. `transcode`: the whole clip in one invocation;
3. the built-in before flows (bench/split_merge_baseline.py): split at keyframes, one `transcode-segment` child per
   segment on `--workers` slots (the worker gets one more slot for the waiting parent), merge with the concat demuxer;
4. the `media-split-merge` flow (plan → foreach segment → merge) with a `taskservice engine`, on a worker with
   `--workers` slots (nothing waits in a slot), the same step code.
For each: wall time and CPU seconds (user + sys of the worker's whole process tree, reaped children included — plus
the engine's for the flow — and of the machine as a whole from /proc/stat). From the built-in run's per-segment times
it derives the critical path (split + longest segment + merge) and projects the wall time for 1, 4, 16 and 64
workers. Nothing is asserted.
"""
from __future__ import annotations

import argparse
import json
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil

if __package__ in (None, ""):  # run as a script: make `bench` and the service importable from the source tree
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from bench.bench_core import run_header, step  # noqa: E402
from bench.machine import _busy_seconds, background_load  # noqa: E402
from bench.procs import BenchError, Launched  # noqa: E402
from bench.results import Figure, Report, guarded_run, print_report  # noqa: E402
from bench.rig import REPO, Endpoints, Rig, RunNames, venv_tool  # noqa: E402
from taskservice.cli.media_commands import MEDIA_FUNCTIONS, media_flow_definition  # noqa: E402
from taskservice.flowdef import parse_definition  # noqa: E402
from taskservice.services import Services  # noqa: E402
from taskservice.specs import FunctionConfig  # noqa: E402
from workers.media.ffmpeg import probe, transcode  # noqa: E402
from workers.media.formats import parse_format, parse_options  # noqa: E402

BUCKET = "bench"
PRESET = "veryfast"
BASELINE = "split-baseline"
FLOW = "media-split-merge"
FUNCTIONS = {BASELINE: "bench.split_merge_baseline:handler",
             **{name: MEDIA_FUNCTIONS[name][0] for name in ("transcode", "transcode-segment", "media-split-plan",
                                                             "media-transcode-segment", "media-merge")}}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=120, help="clip length (default 120)")
    parser.add_argument("--size", default="1280x720", help="clip resolution (default 1280x720)")
    parser.add_argument("--fps", type=int, default=30)
    parser.add_argument("--segment-seconds", type=float, default=10, help="split length (default 10)")
    parser.add_argument("--workers", type=int, default=2, help="worker slots for segments (default 2)")
    parser.add_argument("--postgres", default="postgresql://postgres@127.0.0.1:5432", help="server, no database")
    parser.add_argument("--amqp", default="amqp://guest:guest@127.0.0.1:5672//")
    parser.add_argument("--redis", default="redis://127.0.0.1:6379/0")
    return parser.parse_args(argv)


def tree_cpu_s(pid: int) -> float:
    """user + sys of a process and its live descendants, plus everything they have reaped (ffmpeg, attempts)."""
    total = 0.0
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            t = proc.cpu_times()
        except psutil.Error:
            continue
        total += t.user + t.system + t.children_user + t.children_system
    return total


class Measure:
    """Wall, CPU of the given processes' trees (the bench's own reaped children when none) and machine-wide CPU."""

    def __init__(self, *processes: Launched) -> None:
        self.processes = processes

    def _cpu(self) -> float:
        return sum(tree_cpu_s(p.pid) for p in self.processes) if self.processes else _own_children_cpu()

    def __enter__(self) -> Measure:
        self.wall0, self.busy0 = time.monotonic(), _busy_seconds()
        self.cpu0 = self._cpu()
        return self

    def __exit__(self, *_: Any) -> None:
        self.wall = time.monotonic() - self.wall0
        self.busy = _busy_seconds() - self.busy0
        self.cpu = self._cpu() - self.cpu0


def _own_children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def wait_done(rig: Rig, function: str, iid: str, timeout_s: float = 1800) -> Any:
    services = rig.in_process_services()
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rig.procs.check()
        inv = services.ledger.find_invocation(function, iid)
        if inv is not None and inv.status.value in ("Succeeded", "Failed", "Invalid", "Stopped", "Expired"):
            if inv.status.value != "Succeeded":
                raise BenchError(f"{function}/{iid} ended {inv.status.value}: {inv.error}")
            return inv
        time.sleep(0.1)
    raise BenchError(f"{function}/{iid} did not finish in {timeout_s:g}s")


def wait_execution(rig: Rig, services: Services, name: str, timeout_s: float = 1800) -> Any:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        rig.procs.check()
        execution = services.flows.get_execution(FLOW, name)
        if execution.status not in ("Running", "Stopping"):
            if execution.status != "Succeeded":
                raise BenchError(f"execution {name} of {FLOW} ended {execution.status}: {execution.error}")
            return execution
        time.sleep(0.1)
    raise BenchError(f"execution {name} of {FLOW} did not finish in {timeout_s:g}s")


def makespan(durations: list[float], workers: int) -> float:
    """Segments started in submission order on the first free worker (what the queue does)."""
    free = [0.0] * workers
    for d in durations:
        free.sort()
        free[0] += d
    return max(free)


def run(rig: Rig, args: argparse.Namespace, report: Report) -> None:
    objects = rig.results_dir / "objects"
    clip = objects / BUCKET / "inputs" / "clip.mp4"
    clip.parent.mkdir(parents=True)
    step(f"generating a {args.seconds}s {args.size}@{args.fps} clip (testsrc2 + sine, x264 keyframe every 2 s)")
    subprocess.run(["ffmpeg", "-nostdin", "-v", "error", "-y", "-f", "lavfi", "-i", f"testsrc2=size={args.size}:"
                    f"rate={args.fps}", "-f", "lavfi", "-i", "sine=frequency=440", "-t", str(args.seconds),
                    "-c:v", "libx264", "-preset", "ultrafast", "-g", str(2 * args.fps), "-pix_fmt", "yuv420p",
                    "-c:a", "aac", str(clip)], check=True)
    services = rig.in_process_services()
    for name, handler in FUNCTIONS.items():
        services.ledger.put_function(name, FunctionConfig(handler=handler, timeout_s=3600, max_retries=0))
    text = media_flow_definition(FLOW)
    services.flows.put(FLOW, source=text, definition=parse_definition(text).to_json(), description="bench",
                       on_success=None, on_failure=None)
    opts_event = {"dst_format": "mp4", "preset": PRESET}

    step("1/4 bare ffmpeg transcode (no service)")
    work = rig.results_dir / "bare"
    work.mkdir()
    with Measure() as bare:
        transcode(probe(clip), work / "out.mp4", parse_options(opts_event, parse_format("mp4")), max_bytes=2**34,
                  on_progress=lambda _: None)

    step(f"starting taskservice worker -c {args.workers + 1} (one slot for the waiting split parent)")
    storage_env = {"TASKSERVICE_STORAGE_URL": f"file://{objects}"}
    worker = rig.procs.start("ts-worker", [venv_tool("taskservice"), "worker", "-c", str(args.workers + 1),
                                           "--loglevel", "WARNING"], extra_env=storage_env, watched=True)
    time.sleep(5)  # pool processes up
    event = {"bucket": BUCKET, "object": "inputs/clip.mp4", "output_dir": "out", **opts_event}

    step("2/4 one transcode invocation for the whole clip")
    with Measure(worker) as single:
        services.submitter.submit("transcode", event, invocation_id="single")
        wait_done(rig, "transcode", "single")

    step(f"3/4 built-in before flows: split into {args.segment_seconds:g}s segments, a parent waiting in a slot, "
         f"{args.workers} segment workers, merge")
    with Measure(worker) as split:
        services.submitter.submit(BASELINE, {**event, "segment_seconds": args.segment_seconds}, invocation_id="split")
        inv = wait_done(rig, BASELINE, "split")
    result = json.loads(inv.result)
    children = services.ledger.children(inv.pk)
    seg_wall = [(c.finished_at - c.started_at).total_seconds() for c in children]  # type: ignore[operator]

    step(f"4/4 the {FLOW} flow: taskservice engine + a worker with -c {args.workers} (no slot waits)")
    rig.procs.stop(worker)
    worker = rig.procs.start("ts-worker-flow", [venv_tool("taskservice"), "worker", "-c", str(args.workers),
                                                "--loglevel", "WARNING"], extra_env=storage_env, watched=True)
    engine = rig.procs.start("ts-engine", [venv_tool("taskservice"), "engine", "--loglevel", "WARNING"],
                             watched=True)
    time.sleep(5)  # pool processes and engine up
    with Measure(worker, engine) as flow:
        services.flows.start_named(FLOW, "split-flow", json.dumps({**event, "output_dir": "out-flow",
                                                                   "segment_seconds": args.segment_seconds}))
        execution = wait_execution(rig, services, "split-flow")
    engine_cpu = tree_cpu_s(engine.pid)
    steps = {s.path: s for s in services.flows.steps(execution.pk)}
    flow_seg = [(s.ended_at - s.entered_at).total_seconds() for p, s in steps.items()  # type: ignore[operator]
                if p.startswith("transcode/") and p.count("/") == 2]
    if execution.output["source"]["frames"] != execution.output["outputs"][0]["frames"]:
        raise BenchError(f"the flow's merge lost frames: {execution.output['outputs'][0]}")

    t = result["timings"]
    fixed = t["download_s"] + t["split_s"] + t["merge_s"] + t["upload_s"]
    critical = t["split_s"] + max(seg_wall) + t["merge_s"]
    builtin = f"split-merge built-in (waiting parent), {args.workers} workers"
    as_flow = f"split-merge as the {FLOW} flow, {args.workers} workers"
    for label, m in (("bare ffmpeg (no service)", bare), ("transcode, 1 invocation", single), (builtin, split),
                     (as_flow, flow)):
        report.add(Figure("1", f"{label}: wall", m.wall, "s",
                          detail=f"CPU {m.cpu:.1f} s in the worker tree (bench process for bare ffmpeg; + engine "
                                 f"for the flow), {m.busy:.1f} s machine-wide"))
    for label, m in (("transcode, 1 invocation", single), (builtin, split), (as_flow, flow)):
        report.add(Figure("2", f"{label}: CPU", m.cpu, "s", detail=f"machine-wide {m.busy:.1f} s"))
    report.add(Figure("2", "built-in split vs 1 invocation: CPU overhead", 100 * (split.cpu / single.cpu - 1), "%",
                      target="≤ 10 %", met=split.cpu / single.cpu - 1 <= 0.10,
                      detail=f"machine-wide {100 * (split.busy / single.busy - 1):.1f} %; vs bare ffmpeg "
                             f"{100 * (split.cpu / bare.cpu - 1):.1f} %"))
    report.add(Figure("5", "flow vs built-in split-merge: wall", 100 * (flow.wall / split.wall - 1), "%",
                      detail=f"{flow.wall:.1f} s vs {split.wall:.1f} s; {len(flow_seg)} segment steps, mean "
                             f"{sum(flow_seg) / len(flow_seg):.1f} s entered→ended"))
    report.add(Figure("5", "flow vs built-in split-merge: CPU", 100 * (flow.cpu / split.cpu - 1), "%",
                      detail=f"{flow.cpu:.1f} s (engine {engine_cpu:.2f} s of it) vs {split.cpu:.1f} s; "
                             f"machine-wide {flow.busy:.1f} s vs {split.busy:.1f} s"))
    report.add(Figure("3", "critical path (split + longest segment + merge)", critical, "s",
                      detail=f"split {t['split_s']:.1f} s, longest segment {max(seg_wall):.1f} s, merge "
                             f"{t['merge_s']:.1f} s; {len(seg_wall)} segments, mean {sum(seg_wall) / len(seg_wall):.1f}"
                             f" s; download+upload {t['download_s'] + t['upload_s']:.1f} s"))
    # A worker here = one machine like this one. Segments ran two to a 2-core machine, so their measured wall times
    # are stretched; a segment alone runs its CPU seconds at the parallelism the single transcode reached.
    parallelism = single.cpu / single.wall
    seg_cpu = [s["cpu_s"] for s in result["segments"]]
    solo = [c / parallelism for c in seg_cpu]
    for n in (1, 4, 16, 64):
        projected = fixed + makespan(solo, n)
        report.add(Figure("4", f"projected wall, {n} workers", projected, "s",
                          detail=f"x{single.wall / projected:.1f} vs 1 invocation; from measured segment wall "
                                 f"times as they ran (2 per machine): {fixed + makespan(seg_wall, n):.1f} s"))
    report.note(f"projection: segment solo time = its ffmpeg CPU s / {parallelism:.2f} (cores the single transcode "
                f"used); critical path with solo times: {t['split_s'] + max(solo) + t['merge_s']:.1f} s")
    report.note(f"per-segment wall (s, ledger started→finished), built-in: {', '.join(f'{s:.1f}' for s in seg_wall)}"
                f"; flow steps: {', '.join(f'{s:.1f}' for s in flow_seg)}")
    report.note(f"built-in parent timings (s): {t}")
    report.note(f"flow step timings (s): plan {execution.output['plan_timings']}, merge "
                f"{execution.output['merge_timings']}")
    report.note("projected wall = fixed parent steps (download, split, merge, upload) + segments list-scheduled in "
                "submission order on the first free worker")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    names = RunNames.fresh("media")
    results_dir = REPO / "bench" / "results" / names.run_id
    results_dir.mkdir(parents=True, exist_ok=True)
    rig = Rig(Endpoints(postgres=args.postgres, amqp=args.amqp, redis=args.redis), names, results_dir)
    report = Report()
    info: dict[str, str] = {}

    def body() -> None:
        idle = background_load()
        rig.setup()
        info.update({**run_header(names.run_id, idle),
                     "clip": f"{args.seconds}s {args.size}@{args.fps} → mp4 x264 {PRESET} + aac; segments "
                             f"{args.segment_seconds:g}s"})
        run(rig, args, report)

    status = guarded_run(body, rig.teardown)
    print_report("taskservice media benchmark (Postgres + RabbitMQ, local object store)", info, report,
                 results_dir, artifacts="worker log")
    return status


if __name__ == "__main__":
    sys.exit(main())
