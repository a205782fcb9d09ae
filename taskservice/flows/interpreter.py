"""One advance of one execution: from what the ledger holds now (frames, step runs, step invocations), take every
step that can move and move it, until nothing more can without waiting for a step invocation or a timer.

Frames are the threads of an execution: the top level (scope ''), each parallel branch (`P/0`, `P/1` …) and each
foreach iteration (`F/0` …), nested to any depth (`F/3/P/1`). A step's path is its frame's scope and its name
(`F/3/transcode`). The interpreter never waits and never talks to the broker: it writes step invocations into the
engine's transaction (`Ledger.insert_invocation`) and returns which to ring once that commits.

Data (design §7): a frame's state starts as its input; a step's input is the state or what its inputMappings build;
a step's raw output is `$local`; without outputMappings an object output is merged into the state (a parallel's or
foreach's list under the step's name); with them only the mapped targets are set.
"""
from __future__ import annotations

import hashlib
import json
import logging
import re
import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection

from taskservice.errors import FunctionNotFound, IllegalTransition, TaskServiceError
from taskservice.flowdef import FlowDefinition, Step, StepType, next_step
from taskservice.flowdef.limits import MAX_FOREACH_ITEMS, MAX_HISTORY_EVENTS, MAX_STEP_IO_BYTES, MAX_TIMEOUT_S
from taskservice.flowdef.mappings import apply_input_mappings, apply_output_mappings, resolve
from taskservice.ledger import Ledger
from taskservice.ledger.flow_state import FrameState, LoadedExecution, StepState
from taskservice.ledger.flows import (
    FAILED,
    RUNNING,
    STOPPED,
    STOPPING,
    SUCCEEDED,
    TIMED_OUT,
    dumps,
)
from taskservice.ledger.outbox import record_execution_outcome
from taskservice.ledger.states import TERMINAL, Status
from taskservice.statuses import SUCCESS_CONDITION
from taskservice.submission import encode_payload

log = logging.getLogger(__name__)

WAITING, RETRYING, CAUGHT = "Waiting", "Retrying", "Caught"
LIVE = frozenset({RUNNING, WAITING, RETRYING})
#: Moves of one advance before it yields (a goto loop of pass and choice steps must not hold the engine).
MAX_MOVES = 20_000
#: How a failed step invocation's status reads as an FDL error type, when its handler did not name one.
_ERROR_OF_STATUS = {Status.STOPPED: "Stopped", Status.EXPIRED: "EventAgeExceeded", Status.INVALID: "Invalid"}
#: Error types that are not the handler's own exception: `Unhandled` does not match these.
_SYSTEM_ERRORS = frozenset({"Timeout", "Stopped", "EventAgeExceeded", "Invalid", "FunctionNotFound",
                            "PayloadTooLarge", "WorkerLost"})


class StepFailed(Exception):
    """A step that cannot go on (bad collection, output too large …): fails its frame like a failed task."""

    def __init__(self, error_type: str, message: str) -> None:
        super().__init__(message)
        self.error_type = error_type
        self.message = message


_TOP_LEVEL_KEY = re.compile(r"\$(?:input)?\.([A-Za-z_][A-Za-z0-9_]*)")


def errors_match(errors: tuple[str, ...], error_type: str, *, invalid: bool = False) -> bool:
    """FDL error matching: `FnF.ALL` matches everything, `Unhandled` any exception of the handler itself. For retry
    (`invalid=True`), an invocation that ended Invalid (an InvalidEvent: the same input fails the same way) is
    matched only by its class name, `Invalid` or `FnF.ALL`, so a retry rule on `Unhandled` never re-runs a bad
    event; catch rules still see it as Unhandled."""
    return ("FnF.ALL" in errors or error_type in errors or (invalid and "Invalid" in errors)
            or ("Unhandled" in errors and error_type not in _SYSTEM_ERRORS and not invalid))


def step_invocation_id(execution_pk: int, path: str, visit: int, attempt: int) -> str:
    """Derived, never random: the same step attempt always gets the same id, so it can only be submitted once."""
    digest = hashlib.sha256(f"{path}\x00{visit}\x00{attempt}".encode()).hexdigest()[:24]
    return f"flow_{execution_pk}_{digest}"


def _size(value: Any) -> int:
    return len(dumps(value).encode())


@dataclass
class Advance:
    ex: LoadedExecution
    definition: FlowDefinition
    conn: Connection
    ledger: Ledger
    queue: str | None
    max_payload_bytes: int
    now: datetime
    submitted: list[int] = field(default_factory=list)  # invocation pks to ring after commit
    timers: list[datetime] = field(default_factory=list)  # wake-ups to write (wait steps, retry intervals)
    events: list[tuple[datetime, str, str, dict[str, Any]]] = field(default_factory=list)
    moves: int = 0
    _items: dict[str, list[Any]] = field(default_factory=dict)

    # --- the driver -----------------------------------------------------------------------------------------------
    def run(self) -> None:
        ex = self.ex
        if ex.status == STOPPING:
            self._halt(STOPPED, error_type="Stopped", error="stopped on request")
            return
        if ex.status != RUNNING:
            return
        if ex.timeout_at is not None and self.now >= ex.timeout_at:
            self._halt(TIMED_OUT, error_type="Timeout",
                       error=f"the execution ran longer than timeoutSeconds={self.definition.timeout_s}")
            return
        progress = True
        while progress and ex.status == RUNNING:
            progress = False
            # Deepest frames first: a branch that ends is seen by its parallel step in the same pass.
            running = [f for f in ex.frames.values() if f.status == RUNNING]
            for frame in sorted(running, key=lambda f: -f.scope.count("/")):
                if frame.status == RUNNING and ex.status == RUNNING and self._step(frame):
                    progress = True
                    self.moves += 1
            if ex.events + len(self.events) > MAX_HISTORY_EVENTS:
                self._end_execution(FAILED, error_type="HistoryLimitExceeded",
                                    error=f"the execution's history passed {MAX_HISTORY_EVENTS} events")
            elif self.moves > MAX_MOVES:
                self.timers.append(self.now)  # more to do: yield, and come back at once
                return

    # --- one frame ------------------------------------------------------------------------------------------------
    def _step(self, frame: FrameState) -> bool:
        steps = self._steps_of(frame.scope)
        step = next(s for s in steps if s.name == frame.step)
        path = f"{frame.scope}/{step.name}" if frame.scope else step.name
        if not frame.entered:
            try:
                self._enter(frame, step, path)
            except StepFailed as exc:
                self._fail_step(frame, self.ex.steps[path], exc.error_type, exc.message)
            return True
        run = self.ex.step(path)
        assert run is not None, f"frame {frame.scope!r} entered {path} but its step run is gone"
        try:
            return self._progress(frame, step, path, run)
        except StepFailed as exc:
            self._fail_step(frame, run, exc.error_type, exc.message)
            return True

    def _enter(self, frame: FrameState, step: Step, path: str) -> None:
        previous = self.ex.step(path)
        visit = 1 if previous is None else previous.visit + 1
        if previous is not None and step.type in (StepType.PARALLEL, StepType.FOREACH):
            self._forget_below(path)
        run = StepState(path=path, type=step.type.value, status=RUNNING, visit=visit, entered_at=self.now,
                        id=None if previous is None else previous.id, dirty=True)
        self.ex.steps[path] = run
        frame.entered, frame.dirty = True, True
        context = self._context(frame, path)
        step_input = apply_input_mappings(step.input_mappings, state=frame.state, context=context)
        run.input = step_input
        self._event("StepEntered", path, {"type": step.type.value, "visit": visit})
        if _size(step_input) > MAX_STEP_IO_BYTES:
            raise StepFailed("StepInputTooLarge", f"the step's input is over {MAX_STEP_IO_BYTES} bytes")
        kind = step.type
        if kind is StepType.TASK:
            self._submit(run, step, attempt=1)
        elif kind is StepType.PASS:
            self._exit(frame, step, run, step_input)
        elif kind is StepType.WAIT:
            run.status, run.due_at = WAITING, self._wait_until(step, frame, step_input, context)
            self.timers.append(run.due_at)
            self._event("WaitStarted", path, {"until": run.due_at.isoformat()})
        elif kind is StepType.CHOICE:
            self._choose(frame, step, run, step_input, context)
        elif kind is StepType.SUCCEED:
            self._finish_run(run, SUCCEEDED)
            self._end_frame(frame, SUCCEEDED, output=frame.state)
        elif kind is StepType.FAIL:
            self._finish_run(run, FAILED, error_type=step.error or "Failed", error=step.cause or "")
            self._end_frame(frame, FAILED, error_type=step.error or "Failed", error=step.cause or "")
        elif kind is StepType.PARALLEL:
            for index, branch in enumerate(step.branches):
                self._new_frame(f"{path}/{index}", step_input, branch[0].name)
        elif kind is StepType.FOREACH:
            items = self._collection(step, path, step_input, context)
            run.items = len(items)

    def _progress(self, frame: FrameState, step: Step, path: str, run: StepState) -> bool:
        kind = step.type
        if kind is StepType.TASK:
            if run.status == RETRYING:
                if run.due_at is not None and run.due_at <= self.now:
                    self._submit(run, step, attempt=run.attempts + 1)
                    return True
                return False
            invocation = self.ex.invocations.get(run.invocation_pk or -1)
            if run.status != RUNNING or invocation is None or invocation.status not in TERMINAL:
                return False
            if invocation.status is Status.SUCCEEDED:
                output = None if invocation.result is None else json.loads(invocation.result)
                self._event("TaskSucceeded", path, {"invocationId": run.invocation_id, "attempt": run.attempts})
                self._exit(frame, step, run, output)
            else:
                error_type = invocation.error_type or _ERROR_OF_STATUS.get(invocation.status, "Unhandled")
                self._event("TaskFailed", path, {"invocationId": run.invocation_id, "attempt": run.attempts,
                                                 "errorType": error_type, "error": (invocation.error or "")[:2000]})
                self._task_failed(frame, step, run, error_type, invocation.error or "",
                                  invalid=invocation.status is Status.INVALID)
            return True
        if kind is StepType.WAIT:
            if run.status == WAITING and run.due_at is not None and run.due_at <= self.now:
                self._event("WaitEnded", path, {})
                self._exit(frame, step, run, None)
                return True
            return False
        if kind is StepType.PARALLEL:
            branches = [self.ex.frames[f"{path}/{i}"] for i in range(len(step.branches))]
            return self._join(frame, step, run, branches, total=len(branches))
        if kind is StepType.FOREACH:
            return self._foreach(frame, step, path, run)
        return False

    # --- step kinds -----------------------------------------------------------------------------------------------
    def _submit(self, run: StepState, step: Step, *, attempt: int) -> None:
        assert step.function is not None
        invocation_id = step_invocation_id(self.ex.pk, run.path, run.visit, attempt)
        run.attempts, run.function, run.invocation_id, run.dirty = attempt, step.function, invocation_id, True
        run.status, run.due_at = RUNNING, None
        try:
            payload = encode_payload(run.input, self.max_payload_bytes)
            invocation = self.ledger.insert_invocation(self.conn, step.function, invocation_id, str(uuid.uuid4()),
                                                       payload, queue=self.queue, execution_pk=self.ex.pk)
        except FunctionNotFound as exc:
            raise StepFailed("FunctionNotFound", exc.message) from None
        except TaskServiceError as exc:  # the payload limit of the functions' submission path
            raise StepFailed(exc.code, exc.message) from None
        run.invocation_pk = invocation.pk
        self.submitted.append(invocation.pk)
        self._event("TaskSubmitted", run.path, {"function": step.function, "invocationId": invocation_id,
                                                "attempt": attempt})

    def _task_failed(self, frame: FrameState, step: Step, run: StepState, error_type: str, error: str, *,
                     invalid: bool = False) -> None:
        for rule in step.retry:
            if errors_match(rule.errors, error_type, invalid=invalid):
                if run.attempts < rule.max_attempts:
                    delay = rule.interval_s * rule.multiplier ** (run.attempts - 1)
                    run.status, run.due_at, run.dirty = RETRYING, self.now + timedelta(seconds=delay), True
                    run.error_type, run.error = error_type, error[:4000]
                    self.timers.append(run.due_at)
                    self._event("StepRetried", run.path, {"attempt": run.attempts + 1, "delaySeconds": delay,
                                                          "errorType": error_type})
                    return
                break  # the first rule that matches decides; its attempts are used up
        self._fail_step(frame, run, error_type, error, catch=step.catch)

    def _fail_step(self, frame: FrameState, run: StepState, error_type: str, error: str, *, catch: tuple[Any, ...] = ()
                   ) -> None:
        for rule in catch:
            if errors_match(rule.errors, error_type):
                self._finish_run(run, CAUGHT, error_type=error_type, error=error)
                self._event("StepCaught", run.path, {"errorType": error_type, "goto": rule.goto})
                frame.step, frame.entered, frame.dirty = rule.goto, False, True
                return
        self._finish_run(run, FAILED, error_type=error_type, error=error)
        self._event("StepFailed", run.path, {"errorType": error_type, "error": error[:2000]})
        self._end_frame(frame, FAILED, error_type=error_type, error=error)

    def _choose(self, frame: FrameState, step: Step, run: StepState, step_input: Any, context: dict[str, Any]
                ) -> None:
        target = next((c.goto for c in step.choices
                       if c.condition.evaluate(frame.state, input=step_input, context=context)), step.default_goto)
        if target is None:
            raise StepFailed("NoChoiceMatched", "no choice condition held and the choice step has no default")
        self._finish_run(run, SUCCEEDED, output={"goto": target})
        self._event("StepExited", run.path, {"goto": target})
        frame.step, frame.entered, frame.dirty = target, False, True

    def _foreach(self, frame: FrameState, step: Step, path: str, run: StepState) -> bool:
        items = self._items.get(path)
        if items is None:
            items = self._collection(step, path, run.input, self._context(frame, path))
        frames = [self.ex.frames.get(f"{path}/{i}") for i in range(len(items))]
        running = sum(1 for f in frames if f is not None and f.status == RUNNING)
        broken = any(f is not None and f.status in (FAILED, STOPPED) for f in frames)
        started = False
        if not broken:
            for index, existing in enumerate(frames):
                if running >= step.max_concurrency:
                    break
                if existing is None:
                    state = self._iteration_state(step, run.input)
                    state[step.item_name], state[step.index_name] = items[index], index
                    frames[index] = self._new_frame(f"{path}/{index}", state, step.steps[0].name)
                    running += 1
                    started = True
        if started:
            return True
        if any(f is None for f in frames) and not broken:
            return False
        return self._join(frame, step, run, [f for f in frames if f is not None], total=len(items))

    @staticmethod
    def _iteration_state(step: Step, step_input: Any) -> dict[str, Any]:
        """An iteration starts from the foreach's input without the collection itself (10,000 iterations must not
        each carry all 10,000 items), plus its item and index."""
        state = dict(step_input) if isinstance(step_input, dict) else {}
        top = _TOP_LEVEL_KEY.fullmatch(step.collection or "")
        if top is not None:
            state.pop(top.group(1), None)
        return state

    def _join(self, frame: FrameState, step: Step, run: StepState, children: list[FrameState], *, total: int
              ) -> bool:
        """A parallel or foreach ends when its last child does: with the list of outputs, or failed with the first
        failure once no child is running (siblings that are running finish, so a redrive keeps their output)."""
        if any(c.status == RUNNING for c in children):
            return False
        failed = [c for c in children if c.status != SUCCEEDED]
        if failed:
            first = min(failed, key=lambda c: int(c.scope.rsplit("/", 1)[1]))
            self._fail_step(frame, run, first.error_type or "BranchFailed",
                            f"{first.scope}: {first.error or 'failed'}")
            return True
        if len(children) < total:
            return False
        self.ex.load_outputs(run.path)
        self._exit(frame, step, run, [c.output for c in sorted(children, key=lambda c: int(c.scope.rsplit('/', 1)[1]))])
        return True

    def _exit(self, frame: FrameState, step: Step, run: StepState, output: Any) -> None:
        if _size(output) > MAX_STEP_IO_BYTES:
            raise StepFailed("StepOutputTooLarge", f"the step's output is over {MAX_STEP_IO_BYTES} bytes")
        context = self._context(frame, run.path)
        if step.type in (StepType.PARALLEL, StepType.FOREACH) and not step.output_mappings:
            state = dict(frame.state) if isinstance(frame.state, dict) else {}
            state[step.name] = output
        else:
            state = apply_output_mappings(step.output_mappings, state=frame.state, local=output, context=context)
        self._finish_run(run, SUCCEEDED, output=output)
        self._event("StepExited", run.path, {})
        frame.state, frame.dirty = state, True
        following = next_step(self._steps_of(frame.scope), step)
        if following is None:
            self._end_frame(frame, SUCCEEDED, output=state)
        else:
            frame.step, frame.entered = following.name, False

    # --- frames and the execution ---------------------------------------------------------------------------------
    def _end_frame(self, frame: FrameState, status: str, *, output: Any = None, error_type: str | None = None,
                   error: str | None = None) -> None:
        frame.status, frame.output, frame.error_type, frame.error, frame.dirty = (
            status, output, error_type, error, True)
        if frame.scope == "":
            self._end_execution(status, output=output, error_type=error_type, error=error)

    def _end_execution(self, status: str, *, output: Any = None, error_type: str | None = None,
                       error: str | None = None) -> None:
        ex = self.ex
        ex.status, ex.output, ex.error_type, ex.error = status, output, error_type, error
        ex.finished_at, ex.dirty = self.now, True
        self._event(f"Execution{status}", "", {"errorType": error_type, "error": error} if error_type else {})
        condition = SUCCESS_CONDITION if status == SUCCEEDED else status
        destination = ex.on_success if status == SUCCEEDED else ex.on_failure
        record_execution_outcome(self.conn, flow=ex.flow, execution=ex.name, request_id=ex.request_id,
                                 condition=condition, payload=ex.input_text,
                                 result=None if output is None else dumps(output), error_type=error_type,
                                 error=error, destination=destination)

    def _halt(self, status: str, *, error_type: str, error: str) -> None:
        """Stop every live step: step invocations are stopped (their workers kill the process trees), waits and
        retry timers end. A stop ends Stopped once no step handler is still running (their terminal transitions
        wake the engine again); a timeout ends the execution at once."""
        handlers_running = False
        for run in self.ex.steps.values():
            invocation = self.ex.invocations.get(run.invocation_pk or -1)
            if run.status != RUNNING or invocation is None or invocation.status in TERMINAL:
                continue
            if invocation.status is not Status.STOPPING:
                try:
                    moved = self.ledger.stop_in(self.conn, run.invocation_pk or -1)
                except IllegalTransition:  # it ended after we read it: its wake-up is on its way
                    moved = None
                if moved is not None and moved.status in TERMINAL:
                    continue
            handlers_running = True
        if handlers_running and status == STOPPED:
            return
        for run in self.ex.steps.values():
            if run.status in LIVE:
                self._finish_run(run, STOPPED, error_type=error_type, error=error)
        for frame in self.ex.frames.values():
            if frame.status == RUNNING:
                frame.status, frame.error_type, frame.error, frame.dirty = STOPPED, error_type, error, True
        self._end_execution(status, error_type=error_type, error=error)

    def _new_frame(self, scope: str, state: Any, first: str) -> FrameState:
        previous = self.ex.frames.get(scope)
        frame = FrameState(scope=scope, status=RUNNING, step=first, entered=False, state=state,
                           id=None if previous is None else previous.id, dirty=True)
        self.ex.frames[scope] = frame
        return frame

    def _forget_below(self, path: str) -> None:
        """A parallel or foreach entered again (a goto loop) starts its branches afresh."""
        prefix = f"{path}/"
        for key in [k for k in self.ex.frames if k.startswith(prefix)]:
            del self.ex.frames[key]
        for key in [k for k in self.ex.steps if k.startswith(prefix)]:
            del self.ex.steps[key]
        self.ex.forgotten.add(path)

    def _finish_run(self, run: StepState, status: str, *, output: Any = None, error_type: str | None = None,
                    error: str | None = None) -> None:
        run.status, run.output, run.error_type, run.error = status, output, error_type, error
        run.ended_at, run.due_at, run.dirty = self.now, None, True

    # --- lookups --------------------------------------------------------------------------------------------------
    def _steps_of(self, scope: str) -> tuple[Step, ...]:
        """The step list a frame runs: the top level, or a parallel branch / the foreach body its scope names."""
        steps = self.definition.steps
        parts = scope.split("/") if scope else []
        for name, index in zip(parts[::2], parts[1::2], strict=True):
            container = next(s for s in steps if s.name == name)
            steps = container.branches[int(index)] if container.type is StepType.PARALLEL else container.steps
        return steps

    def _context(self, frame: FrameState, path: str) -> dict[str, Any]:
        parts = frame.scope.split("/") if frame.scope else []
        index = int(parts[-1]) if parts else None
        return {"executionName": self.ex.name, "flow": self.ex.flow, "requestId": self.ex.request_id,
                "stepPath": path, "index": index}

    def _collection(self, step: Step, path: str, step_input: Any, context: dict[str, Any]) -> list[Any]:
        assert step.collection is not None
        items = resolve(step.collection, state=step_input, input=step_input, local=None, context=context)
        if not isinstance(items, list):
            raise StepFailed("InvalidCollection", f"iterationMapping.collection {step.collection} is "
                                                  f"{type(items).__name__}, not a list")
        if len(items) > MAX_FOREACH_ITEMS:
            raise StepFailed("TooManyItems", f"{len(items)} items; a foreach takes at most {MAX_FOREACH_ITEMS}")
        self._items[path] = items
        return items

    def _wait_until(self, step: Step, frame: FrameState, step_input: Any, context: dict[str, Any]) -> datetime:
        if step.duration_s is not None:
            seconds: Any = step.duration_s
            if isinstance(seconds, str):
                seconds = resolve(seconds, state=frame.state, input=step_input, local=None, context=context)
            if isinstance(seconds, bool) or not isinstance(seconds, int | float) or not 0 <= seconds <= MAX_TIMEOUT_S:
                raise StepFailed("InvalidWait", f"duration {step.duration_s} is {seconds!r}, not a number of "
                                                f"seconds between 0 and {MAX_TIMEOUT_S}")
            return self.now + timedelta(seconds=seconds)
        assert step.until is not None
        value: Any = step.until
        if value.startswith("$"):
            value = resolve(value, state=frame.state, input=step_input, local=None, context=context)
        try:
            until = datetime.fromisoformat(str(value))
        except ValueError:
            raise StepFailed("InvalidWait", f"until {value!r} is not an ISO-8601 time") from None
        if until.tzinfo is None:
            raise StepFailed("InvalidWait", f"until {value!r} has no time zone")
        return until

    def _event(self, type_: str, path: str, detail: dict[str, Any]) -> None:
        self.events.append((self.now, type_, path, detail))
