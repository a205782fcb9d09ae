"""The flows part of the REST contract (design §7) as pydantic models: queries and answers. Kept apart from
schemas.py, which holds the functions' part; openapi.py renders both."""
from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from taskservice.api.schemas import _QUERY_INT, Answer, Cursor, Name, Query, QueryTime, Timestamp
from taskservice.ledger.flows import EXECUTION_STATUSES, ExecutionFilter
from taskservice.specs import INVOCATION_ID

ExecutionName = Annotated[str, Field(pattern=INVOCATION_ID.pattern, description="execution name")]
_STATUS = "|".join(EXECUTION_STATUSES)
ExecutionStatusList = Annotated[str, Field(pattern=rf"^(?:{_STATUS})(?:,(?:{_STATUS}))*$",
                                           description="one execution status or several, comma-separated")]


class ExecutionQuery(Query):
    """GET /v1/executions: the invocations list's filters, for executions."""

    flow: Name | None = None
    status: ExecutionStatusList | None = None
    prefix: Annotated[str, Field(pattern=INVOCATION_ID.pattern, description="execution-name prefix")] | None = None
    since: QueryTime | None = None
    until: QueryTime | None = None
    limit: Annotated[int, Field(ge=1, le=1000), _QUERY_INT] = 50
    cursor: Cursor | None = None

    def filter(self) -> ExecutionFilter:
        statuses = tuple(self.status.split(",")) if self.status else ()
        return ExecutionFilter(flow=self.flow, statuses=statuses, prefix=self.prefix, since=self.since,
                               until=self.until)


class HistoryQuery(Query):
    """GET …/history: events after `after` (the last id seen), oldest first."""

    after: Annotated[int, Field(ge=0, le=2**62), _QUERY_INT] = 0
    limit: Annotated[int, Field(ge=1, le=5000), _QUERY_INT] = 1000


class Flow(Answer):
    name: Name
    description: str
    on_success: str | None
    on_failure: str | None
    definition: dict[str, Any] = Field(description="the definition as parsed (FDL as JSON)")
    source: str = Field(description="the definition as deployed (YAML or JSON text)")
    createdAt: Timestamp
    updatedAt: Timestamp
    executions: dict[str, int] = Field(description="how many executions are in each status")


class FlowList(Answer):
    items: list[Flow]


class ExecutionStarted(Answer):
    executionName: ExecutionName
    flow: str
    requestId: str
    status: str


class StepInvocation(Answer):
    function: str
    invocationId: str


class StepRun(Answer):
    path: str
    type: str
    status: str
    visit: int
    attempts: int
    items: int | None
    invocation: StepInvocation | None
    input: Any
    output: Any
    error: str | None
    errorType: str | None
    enteredAt: Timestamp
    endedAt: Timestamp | None


class ExecutionSummary(ExecutionStarted):
    error: str | None
    errorType: str | None
    startedAt: Timestamp
    finishedAt: Timestamp | None
    durationMs: float | None
    redrives: int


class Execution(ExecutionSummary):
    input: Any
    output: Any
    steps: list[StepRun]


class ExecutionPage(Answer):
    items: list[ExecutionSummary]
    next_cursor: Cursor | None


class HistoryEvent(Answer):
    id: int
    at: Timestamp
    type: str
    path: str
    detail: dict[str, Any]


class History(Answer):
    items: list[HistoryEvent]
    last: int = Field(description="the id to pass as `after` for the events that follow")


ANSWERS: tuple[type[Answer], ...] = (Flow, FlowList, ExecutionStarted, Execution, ExecutionPage, History)
