"""Handlers used by the tests; workers import them as tests.handlers:<name> (the worker puts its cwd on sys.path)."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path
from typing import Any, NoReturn


def _mark(event: dict[str, Any], context: Any) -> None:
    """Append one line per execution to event["marker"], so a test can count how often a handler really ran."""
    if event.get("marker"):
        with open(event["marker"], "a") as fh:
            fh.write(f"{context.invocation_id} attempt={context.attempt} pid={os.getpid()}\n")


def _write_whole(path: str, text: str) -> None:
    """Write `text` to `path` so that a reader sees either no file or all of it (a temporary file renamed)."""
    partial = f"{path}.partial"
    Path(partial).write_text(text)
    os.replace(partial, path)


def wait_for_gate(gate: str, text: str | None = None) -> None:
    """Hold until the file `gate` exists (and, given `text`, contains it): the test decides when the handler may go
    on, however long that takes, or names the line of a log it waits for."""
    def opened() -> bool:
        if text is None:
            return os.path.exists(gate)
        return os.path.exists(gate) and text in Path(gate).read_text(errors="replace")

    while not opened():
        time.sleep(0.05)


def counted(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Marks its run, then sleeps event["seconds"] and, given event["gate"], holds until that file exists (and
    contains event["gate_text"], if given)."""
    _mark(event, context)
    time.sleep(float(event.get("seconds", 0)))
    if event.get("gate"):
        wait_for_gate(event["gate"], event.get("gate_text"))
    return {"attempt": context.attempt}


def fail_until(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """Fails while attempt < event["succeed_on"]."""
    _mark(event, context)
    context.logger.info("attempt %d starting", context.attempt)
    if context.attempt < int(event["succeed_on"]):
        raise RuntimeError(f"planned failure on attempt {context.attempt}")
    return {"attempt": context.attempt}


def hang_until_killed() -> NoReturn:
    """What a stuck handler does: nothing, until its worker kills it (timeout, stop) — no deadline of its own."""
    while True:
        signal.pause()


def spawn_and_hang(event: dict[str, Any], context: Any) -> None:
    """Starts a child process (like ffmpeg would), marks its run, records both pids, then hangs. The pids file comes
    last and whole: a test that sees it knows the run is marked and has both pids."""
    child = subprocess.Popen(["sleep", "300"])
    _mark(event, context)
    _write_whole(event["pids"], f"{os.getpid()} {child.pid}\n")
    time.sleep(300)


def chatty(event: dict[str, Any], context: Any) -> str:
    for i in range(int(event.get("lines", 3))):
        context.logger.info("line %d", i)
        context.progress(100 * (i + 1) / int(event.get("lines", 3)), f"step {i + 1}")
    print("plain stdout line")
    subprocess.run(["sh", "-c", "echo from a child process >&2"], check=True)
    return "ok"


def fan_out(event: dict[str, Any], context: Any) -> list[str]:
    return [context.submit(event["child"], {"n": n}, invocation_id=f"{context.invocation_id}-{n}")["invocationId"]
            for n in range(int(event["count"]))]


def returns_unserialisable(event: Any, context: Any) -> Any:
    return {1, 2, 3}


def exits(event: Any, context: Any) -> None:
    raise SystemExit(3)


def record_sink(event: dict[str, Any], context: Any) -> str:
    """The target of a function: destination. The record is the event; the original payload says where to write."""
    original = json.loads(event["requestPayload"])
    with open(original["sink_file"], "a") as fh:
        fh.write(json.dumps(event) + "\n")
    return event["requestContext"]["requestId"]


def fan_out_then_hang(event: dict[str, Any], context: Any) -> None:
    """Submits event["count"] children of event["child"], then waits like a parent collecting results would."""
    for n in range(int(event["count"])):
        context.submit(event["child"], event.get("child_event", {}), invocation_id=f"{context.invocation_id}-{n}")
    time.sleep(300)


def ticker(event: dict[str, Any], context: Any) -> dict[str, Any]:
    """A long job for the console's live view: starts a child process (recording both pids in event["pids"]), then
    reports progress and logs a line every 0.2 s for event["seconds"]."""
    child = subprocess.Popen(["sleep", "300"])
    if event.get("pids"):
        Path(event["pids"]).write_text(f"{os.getpid()} {child.pid}\n")
    context.logger.info("started child process %d", child.pid)
    steps = int(float(event.get("seconds", 30)) / 0.2)
    for step in range(1, steps + 1):
        time.sleep(0.2)
        context.logger.info("tick %d of %d", step, steps)
        context.progress(100 * step / steps, f"tick {step} of {steps}")
    child.kill()
    return {"ticks": steps}
