"""The REST contract as pydantic models: the query strings and option bodies the API accepts, and every answer.

The endpoints validate their input with these models and build their answers through them (views.py), and
openapi.py renders the document from their JSON schemas, so the document says what the server does: a rule lives
here once, not once in a handler and again in the document. Function, trigger and replay bodies are validated by
the models in taskservice/specs.py, which the ledger and the CLI share.
"""
from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    RootModel,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

from taskservice.control import BULK_LIMIT
from taskservice.errors import InvalidQuery, PayloadTooLarge
from taskservice.ledger.queries import InvocationFilter
from taskservice.ledger.states import Status
from taskservice.specs import (
    CONSUMER_GROUP,
    FUNCTION_NAME,
    INVOCATION_ID,
    JSON_INTEGER,
    TIME_SCHEMA,
    FunctionConfig,
    Time,
    TriggerConfig,
    check_function_name,
    parse_time,
)
from taskservice.statuses import Condition
from taskservice.submission import MAX_BATCH as BATCH_LIMIT
from taskservice.trigger_specs import QueueConfig, StorageConfig, TimerConfig

# check_function_name raises InvalidName itself (pydantic lets it through), so a bad name keeps its error code.
Name = Annotated[str, AfterValidator(check_function_name), Field(json_schema_extra={"pattern": FUNCTION_NAME.pattern})]
_STATUS = "|".join(s.value for s in Status)
STATUS_LIST = re.compile(rf"^(?:{_STATUS})(?:,(?:{_STATUS}))*$")
StatusList = Annotated[str, Field(pattern=STATUS_LIST.pattern, description="one status or several, comma-separated")]
# Every prefix of an invocation id matches the id pattern itself; anything else could match nothing (and a NUL
# could not even be sent to PostgreSQL), so it is refused rather than answered with an empty list.
Prefix = Annotated[str, Field(pattern=INVOCATION_ID.pattern, description="invocation-id prefix, case-sensitive")]
StrictBool = Annotated[bool, Field(strict=True)]
# Cursors are urlsafe base64 of "v1:<pk>" without padding (ledger/queries.py encode_cursor), pk of up to 18 digits
# so that it fits a BIGINT: spelled out group by group, so that every string it admits decodes to a real cursor.
_DIGITS3 = r"(?:(?:[MN][DTjz]|O[DT])[AEIMQUYcgk][w-z0-5])"
_DIGITS2 = r"(?:[MN][DTjz]|O[DT])[AEIMQUYcgk]"
_DIGIT1 = r"(?:[MN][AQgw]|O[AQ])"
CURSOR = re.compile(rf"^djE6(?:{_DIGITS3}{{1,6}}|{_DIGITS3}{{0,5}}(?:{_DIGITS2}|{_DIGIT1}))$")
Cursor = Annotated[str, Field(pattern=CURSOR.pattern, description="next_cursor of the previous page")]


def _query_int(value: Any) -> Any:
    """Digits only: a query string is text, and "+5", " 5" or "5.0" are not what the document calls an integer."""
    if isinstance(value, str):
        if not re.fullmatch(r"-?[0-9]{1,19}", value):
            raise ValueError("must be an integer")
        return int(value)
    return value


_QUERY_INT = BeforeValidator(_query_int)  # after the Field in Annotated, so that ge/le stay JSON-schema bounds
QueryTime = Annotated[datetime, BeforeValidator(parse_time), WithJsonSchema(TIME_SCHEMA)]

M = TypeVar("M", bound=BaseModel)


def _problems(exc: ValidationError) -> tuple[str, list[dict[str, str]]]:
    problems = [{"field": ".".join(map(str, e["loc"])) or "(body)", "problem": e["msg"]} for e in exc.errors()]
    return "; ".join(f"{p['field']}: {p['problem']}" for p in problems), problems


def _without_nulls(schema: dict[str, Any]) -> None:
    """Optional fields of these models may be left out but are never null: drop pydantic's null branch."""
    for prop in schema.get("properties", {}).values():
        if "default" in prop and prop["default"] is None:
            del prop["default"]
        branches = prop.get("anyOf")
        if branches and {"type": "null"} in branches:
            rest = [b for b in branches if b != {"type": "null"}]
            prop.pop("anyOf")
            if len(rest) == 1:
                prop.update(rest[0])
            else:
                prop["anyOf"] = rest


class Query(BaseModel):
    """Query parameters: unknown ones are ignored (as HTTP caches and proxies expect), known ones checked."""

    model_config = ConfigDict(extra="ignore", json_schema_extra=_without_nulls)

    @classmethod
    def parse(cls: type[M], args: Any) -> M:
        data: dict[str, Any] = {}
        for name in cls.model_fields:
            values = args.getlist(name)
            if values:  # status may repeat (status=A&status=B) as well as hold a comma-separated list
                data[name] = ",".join(values) if name == "status" else values[0]
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            text, problems = _problems(exc)
            raise InvalidQuery(f"invalid query: {text}", details=problems) from None


def _statuses(value: str | list[Status] | None) -> tuple[Status, ...]:
    if value is None:
        return ()
    return tuple(Status(s) for s in value.split(",")) if isinstance(value, str) else tuple(value)


class InvocationQuery(Query):
    """GET /v1/invocations."""

    function: Name | None = None
    status: StatusList | None = None
    prefix: Prefix | None = None
    since: QueryTime | None = None
    until: QueryTime | None = None
    limit: Annotated[int, Field(ge=1, le=1000), _QUERY_INT] = 50
    cursor: Cursor | None = None

    def filter(self) -> InvocationFilter:
        return InvocationFilter(function=self.function, statuses=_statuses(self.status), prefix=self.prefix,
                                since=self.since, until=self.until)


class DeadLetterQuery(Query):
    """GET /v1/dead-letters."""

    function: Name | None = None
    condition: Condition | None = None
    since: QueryTime | None = None
    until: QueryTime | None = None
    limit: Annotated[int, Field(ge=1, le=1000), _QUERY_INT] = 50
    cursor: Cursor | None = None


class LogsQuery(Query):
    """GET …/logs."""

    attempt: Annotated[int, Field(ge=1, le=1000, description="only this attempt's lines"), _QUERY_INT] | None = None


def _no_null_values(data: Any) -> Any:
    if isinstance(data, dict):
        nulls = sorted(k for k, v in data.items() if v is None)
        if nulls:
            raise ValueError(f"{', '.join(nulls)}: null is not a value here; leave the field out")
    return data


class Body(BaseModel):
    """An option body: unknown fields are refused, so a misspelt option never goes unnoticed; null is refused."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_without_nulls)

    _nulls = model_validator(mode="before")(_no_null_values)

    @classmethod
    def parse(cls: type[M], data: Any) -> M:
        """Validate a decoded JSON body into a 400 InvalidQuery that names each field."""
        if not isinstance(data, dict):
            raise InvalidQuery("the request body must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            text, problems = _problems(exc)
            raise InvalidQuery(f"invalid request body: {text}", details=problems) from None


class RetryOptions(Body):
    """POST …/retry (body optional)."""

    includeSucceeded: StrictBool = Field(default=False, description="also re-run a Succeeded invocation")


SELECTORS = ("function", "status", "prefix", "since", "until")


def _needs_a_selector(schema: dict[str, Any]) -> None:
    _without_nulls(schema)
    schema["anyOf"] = [{"required": [name]} for name in SELECTORS]


class BulkSelection(Body):
    """POST /v1/invocations/stop: at least one selector, so that `{}` never stops everything by accident."""

    model_config = ConfigDict(json_schema_extra=_needs_a_selector)

    function: Name | None = None
    status: StatusList | Annotated[list[Status], Field(min_length=1)] | None = None
    prefix: Prefix | None = None
    since: Time | None = None
    until: Time | None = None
    limit: Annotated[int, Field(ge=1, le=BULK_LIMIT), JSON_INTEGER] = BULK_LIMIT

    @model_validator(mode="after")
    def _selects(self) -> BulkSelection:
        if all(getattr(self, name) is None for name in SELECTORS):
            raise ValueError(f"give at least one of {', '.join(SELECTORS)}")
        return self

    def filter(self) -> InvocationFilter:
        return InvocationFilter(function=self.function, statuses=_statuses(self.status), prefix=self.prefix,
                                since=self.since, until=self.until)


class BulkRetrySelection(BulkSelection):
    """POST /v1/invocations/retry."""

    includeSucceeded: StrictBool = Field(default=False, description="also re-run Succeeded invocations")


class BatchItem(BaseModel):
    """One item of POST …/invocations:batch. The id is checked per item (an id that breaks the pattern gets its
    own 400 in the answer), so the schema only says it is a string."""

    model_config = ConfigDict(extra="forbid")

    invocationId: str | None = Field(default=None, description=(
        f"your id for the invocation (default: generated); unique per function; must match {INVOCATION_ID.pattern}, "
        "else this item alone is refused with status 400"))
    payload: Any = Field(default=None, description="the payload: any JSON (default null)")


class BatchSubmission(Body):
    """POST /v1/functions/{name}/invocations:batch."""

    items: Annotated[list[BatchItem], Field(min_length=1, max_length=BATCH_LIMIT, description=(
        f"1 to {BATCH_LIMIT} invocations, written in one transaction; more is refused with 413"))]

    @classmethod
    def parse_batch(cls, data: Any) -> BatchSubmission:
        """Like `parse`, but too many items is 413 (the request is too large), not 400; both write nothing."""
        if isinstance(data, dict) and isinstance(data.get("items"), list) and len(data["items"]) > BATCH_LIMIT:
            raise PayloadTooLarge(f"the batch has {len(data['items'])} items; the limit is {BATCH_LIMIT} per "
                                  "request: split it")
        return cls.parse(data)


# --- answers ------------------------------------------------------------------------------------------------------
def _open(schema: dict[str, Any]) -> None:
    """Answers may gain fields in v1: the server never sends an undeclared one, but clients must not forbid them."""
    schema.pop("additionalProperties", None)


class Answer(BaseModel):
    """Views build every answer through a subclass: a field the document does not declare is an error at once."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_open,
                              json_schema_serialization_defaults_required=True)

    def dump(self) -> dict[str, Any]:
        """The JSON-ready dict a view returns (aliases such as Transition's `from` applied)."""
        return self.model_dump(mode="json", by_alias=True)


Timestamp = datetime
ErrorCode = Annotated[str, Field(description="the error class, e.g. FunctionNotFound, InvalidQuery, Unauthorized")]


class ErrorDetail(Answer):
    code: ErrorCode
    message: str


class Submitted(Answer):
    invocationId: Annotated[str, Field(pattern=INVOCATION_ID.pattern)]
    requestId: str
    function: str
    status: Status


class Progress(Answer):
    percent: float | None
    message: str | None


class InvocationSummary(Submitted):
    attempts: int
    createdAt: Timestamp
    startedAt: Timestamp | None
    finishedAt: Timestamp | None
    durationMs: float | None
    progress: Progress
    result: Any = Field(description="the handler's return value (any JSON)")
    error: str | None
    errorType: str | None
    condition: Condition | Literal[""] | None = Field(description='"" on success')
    worker: str | None
    heartbeatAt: Timestamp | None
    leaseExpiresAt: Timestamp | None
    nextAttemptAt: Timestamp | None
    startsAt: Timestamp | None = Field(description="a delayed invocation not started yet: its earliest start")
    logLines: int
    replayOf: str | None = Field(description="request id of the failure this replays")


class InvocationState(InvocationSummary):
    payload: Any = Field(description="the submitted payload (any JSON)")


class Transition(Answer):
    from_: Status | None = Field(alias="from")
    to: Status
    attempt: int
    reason: str
    at: Timestamp

    model_config = ConfigDict(populate_by_name=True, serialize_by_alias=True)


class Delivery(Answer):
    destination: str
    status: Literal["pending", "delivered", "failed"]
    attempts: int
    lastError: str | None
    deliveredAt: Timestamp | None
    condition: str


class ChildProgress(Answer):
    percent: float | None


class Child(Submitted):
    progress: ChildProgress


class Invocation(InvocationState):
    transitions: list[Transition]
    destinations: list[Delivery]
    parent: Submitted | None
    children: list[Child]


class Error(Answer):
    error: ErrorDetail
    details: Any = Field(default=None, description="per-field problems of a refused body or query")
    invocation: InvocationState | None = Field(default=None, description="on 409: the invocation holding the id")

    model_config = ConfigDict(json_schema_serialization_defaults_required=False)


class Function(FunctionConfig, Answer):
    """A registered function: its config (FunctionConfig, the same rules) plus name and timestamps."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_open,
                              json_schema_serialization_defaults_required=True)

    name: Name
    createdAt: Timestamp
    updatedAt: Timestamp


class FunctionList(Answer):
    items: list[Function]


class InvocationPage(Answer):
    items: list[InvocationSummary]
    next_cursor: Cursor | None


class Refused(Submitted):
    reason: str


class BulkResult(Answer):
    changed: int
    items: list[Submitted]
    refused: list[Refused]


class BatchItemResult(Answer):
    """What became of one item: `status` is what a single submission of it would have answered."""

    index: Annotated[int, Field(ge=0, description="the item's position in the request, from 0")]
    status: Annotated[Literal[202, 400, 409, 413], Field(description=(
        "202 accepted; 409 the id is taken (in the ledger, or by an earlier item of this batch); 400 a bad id or "
        "payload; 413 the payload is over the limit"))]
    invocationId: str | None = Field(description="the item's id as given, or the one generated for it; null when "
                                                 "the item gave none and was refused")
    requestId: str | None = Field(description="202: the new invocation's request id; 409: the existing one's")
    invocationStatus: Status | None = Field(description="202: Enqueued; 409: the existing invocation's status")
    error: ErrorDetail | None = Field(description="why the item was not accepted (null when accepted)")


class BatchResult(Answer):
    """The answer of POST …/invocations:batch: one result per item, in request order."""

    accepted: int
    duplicates: int
    refused: int
    items: list[BatchItemResult]


class LogLine(Answer):
    attempt: int
    at: Timestamp
    level: str
    message: str


class Logs(Answer):
    invocationId: str
    status: Status
    items: list[LogLine]


class DeadLetter(Answer):
    id: int
    function: str
    invocationId: str
    requestId: str
    condition: Condition
    errorType: str | None
    createdAt: Timestamp
    record: dict[str, Any] = Field(description="the destination record in Function Compute's format")


class DeadLetterPage(Answer):
    items: list[DeadLetter]
    next_cursor: Cursor | None


class PartitionLag(Answer):
    topic: str
    partition: int
    committed: int
    high: int
    lag: int
    at: str


class Lag(Answer):
    total: int | None = Field(description="uncommitted records; null before the first report")
    partitions: list[PartitionLag]


TriggerStatus = Annotated[dict[str, Any], Field(description=(
    "what the trigger's processes recorded: a Kafka trigger's duplicates; a timer's nextFireTime, lastFireTime, "
    "fired and missed; a storage trigger's events, lastEvent, lastEventTime; a queue trigger's backlog, messages, "
    "batches, deadLetters and duplicates. Duplicates are records or messages delivered again (after a crash or a "
    "rebalance) that the ledger already held, passed over without a second invocation."))]


class Trigger(TriggerConfig, Answer):
    """A trigger: its config (TriggerConfig) with the consumer group resolved, plus name, lag, status and
    timestamps."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_open,
                              json_schema_serialization_defaults_required=True)

    name: Name
    consumer_group: Annotated[str, Field(pattern=CONSUMER_GROUP.pattern)]  # type: ignore[assignment]  # resolved
    lag: Lag
    status: TriggerStatus
    createdAt: Timestamp
    updatedAt: Timestamp


_EVENT_TRIGGER_CONFIG = ConfigDict(extra="forbid", json_schema_extra=_open,
                                   json_schema_serialization_defaults_required=True)


class TimerTrigger(TimerConfig, Answer):
    model_config = _EVENT_TRIGGER_CONFIG

    name: Name
    status: TriggerStatus
    createdAt: Timestamp
    updatedAt: Timestamp


class StorageTrigger(StorageConfig, Answer):
    model_config = _EVENT_TRIGGER_CONFIG

    name: Name
    status: TriggerStatus
    createdAt: Timestamp
    updatedAt: Timestamp


class QueueTrigger(QueueConfig, Answer):
    model_config = _EVENT_TRIGGER_CONFIG

    name: Name
    status: TriggerStatus
    createdAt: Timestamp
    updatedAt: Timestamp


AnyTriggerAnswer = Trigger | TimerTrigger | StorageTrigger | QueueTrigger


class AnyTrigger(RootModel[AnyTriggerAnswer]):
    """A trigger of any kind, as read or written (`kind` says which)."""


class AnyTriggerConfig(RootModel[TriggerConfig | TimerConfig | StorageConfig | QueueConfig]):
    """PUT /v1/triggers/{name}: `kind` kafka (the default), timer, storage or queue, each with its own fields."""


class TriggerList(Answer):
    items: list[AnyTriggerAnswer]


class StorageNotification(BaseModel):
    """MinIO's webhook notification: {EventName, Key, Records: [S3 event records]}; each record is checked by the
    server (taskservice/storage_events.py) before anything is written."""

    model_config = ConfigDict(extra="allow")

    Records: list[dict[str, Any]] = Field(min_length=1, max_length=1000)


class SubmittedEvent(Answer):
    trigger: str
    function: str
    invocationId: str


class StorageEventsResult(Answer):
    events: int
    submitted: list[SubmittedEvent]
    duplicates: int
    ignored: int = Field(description="events no trigger watches")


class Replayed(Submitted):
    replayOf: str


class ReplayOutcome(Answer):
    source: str
    function: str | None
    invocationId: str | None
    outcome: Literal["replayed", "duplicate", "failed"]
    error: str | None


class ReplayOutcomes(Answer):
    items: list[ReplayOutcome]
    replayed: int
    duplicate: int
    failed: int


class Health(Answer):
    """/healthz: 503 when the ledger is unreachable; a broker that is away only delays execution (200, degraded)."""

    status: Literal["ok", "degraded"]
    database: str
    broker: str
    version: str


ANSWERS: tuple[type[BaseModel], ...] = (
    Error, Function, FunctionList, Submitted, InvocationState, Invocation, InvocationPage, BulkResult, BatchResult,
    Logs, DeadLetterPage, Trigger, TimerTrigger, StorageTrigger, QueueTrigger, AnyTrigger, TriggerList, Replayed,
    ReplayOutcomes, Health, StorageEventsResult)
REQUESTS: tuple[type[BaseModel], ...] = (RetryOptions, BulkSelection, BulkRetrySelection, AnyTriggerConfig,
                                         StorageNotification, BatchSubmission)
QUERIES: dict[str, type[Query]] = {"invocations": InvocationQuery, "dead_letters": DeadLetterQuery,
                                   "logs": LogsQuery}
