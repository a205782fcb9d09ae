"""The SDK's typed view of flows and executions (design §7), as `Client` returns them.

Kept beside client.py rather than in it so the HTTP client stays one readable module; these are plain records
built from the API's documents, each keeping the whole document as `raw` (what the CLI prints with --json).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

#: The statuses an execution can end in; `Stopping` and `Running` are the live ones.
EXECUTION_ENDED = frozenset({"Succeeded", "Failed", "Stopped", "TimedOut"})


@dataclass(frozen=True)
class FlowInfo:
    """A deployed flow; `executions` counts its executions per status."""

    name: str
    description: str
    on_success: str | None
    on_failure: str | None
    definition: dict[str, Any]
    source: str
    created_at: str | None
    updated_at: str | None
    executions: dict[str, int]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> FlowInfo:
        return cls(name=doc["name"], description=doc.get("description") or "", on_success=doc.get("on_success"),
                   on_failure=doc.get("on_failure"), definition=doc.get("definition") or {},
                   source=doc.get("source") or "", created_at=doc.get("createdAt"), updated_at=doc.get("updatedAt"),
                   executions=dict(doc.get("executions") or {}), raw=doc)


@dataclass(frozen=True)
class ExecutionStarted:
    """The answer to a start, stop or redrive (202), and the existing execution a duplicate name's 409 carries."""

    execution_name: str
    flow: str
    request_id: str
    status: str

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> ExecutionStarted:
        return cls(execution_name=doc["executionName"], flow=doc["flow"], request_id=doc["requestId"],
                   status=doc["status"])

    def to_api(self) -> dict[str, Any]:
        return {"executionName": self.execution_name, "flow": self.flow, "requestId": self.request_id,
                "status": self.status}


@dataclass(frozen=True)
class StepInfo:
    """One run of one step: `path` is its frame's scope and its name (`F/3/encode` is iteration 3 of foreach F),
    `visit` counts re-entries (a goto loop, a redrive); a task step names the invocation it submitted."""

    path: str
    type: str
    status: str
    visit: int
    attempts: int
    items: int | None
    function: str | None
    invocation_id: str | None
    input: Any
    output: Any
    error: str | None
    error_type: str | None
    entered_at: str | None
    ended_at: str | None

    @property
    def depth(self) -> int:
        """How deep in parallels and foreaches it sits: `a` is 0, `F/3/encode` is 1."""
        return self.path.count("/") // 2

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> StepInfo:
        invocation = doc.get("invocation") or {}
        return cls(path=doc["path"], type=doc["type"], status=doc["status"], visit=doc.get("visit", 1),
                   attempts=doc.get("attempts", 0), items=doc.get("items"), function=invocation.get("function"),
                   invocation_id=invocation.get("invocationId"), input=doc.get("input"), output=doc.get("output"),
                   error=doc.get("error"), error_type=doc.get("errorType"), entered_at=doc.get("enteredAt"),
                   ended_at=doc.get("endedAt"))


@dataclass(frozen=True)
class ExecutionInfo:
    """One execution as the API shows it. From a list, `input`, `output` and `steps` are not included (None,
    None, [])."""

    flow: str
    name: str
    request_id: str
    status: str
    input: Any
    output: Any
    error: str | None
    error_type: str | None
    started_at: str | None
    finished_at: str | None
    duration_ms: float | None
    redrives: int
    steps: list[StepInfo]
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def ended(self) -> bool:
        return self.status in EXECUTION_ENDED

    @property
    def succeeded(self) -> bool:
        return self.status == "Succeeded"

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> ExecutionInfo:
        return cls(flow=doc["flow"], name=doc["executionName"], request_id=doc["requestId"], status=doc["status"],
                   input=doc.get("input"), output=doc.get("output"), error=doc.get("error"),
                   error_type=doc.get("errorType"), started_at=doc.get("startedAt"),
                   finished_at=doc.get("finishedAt"), duration_ms=doc.get("durationMs"),
                   redrives=doc.get("redrives", 0), steps=[StepInfo.from_api(s) for s in doc.get("steps") or []],
                   raw=doc)


@dataclass(frozen=True)
class ExecutionPage:
    """One keyset page of executions, newest first; pass `next_cursor` back as `cursor` for the next."""

    items: list[ExecutionInfo]
    next_cursor: str | None


@dataclass(frozen=True)
class HistoryEvent:
    id: int
    at: str
    type: str
    path: str
    detail: dict[str, Any]

    @classmethod
    def from_api(cls, doc: dict[str, Any]) -> HistoryEvent:
        return cls(id=doc["id"], at=doc["at"], type=doc["type"], path=doc.get("path") or "",
                   detail=doc.get("detail") or {})


@dataclass(frozen=True)
class HistoryPage:
    """Events after the `after` asked for, oldest first; `last` is the `after` to ask with next (follow)."""

    items: list[HistoryEvent]
    last: int
    raw: dict[str, Any] = field(repr=False, compare=False)
