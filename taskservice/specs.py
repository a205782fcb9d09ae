"""Validation of what callers send: names, invocation ids and function configs (design §2)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, WithJsonSchema, field_validator

from taskservice.errors import (
    InvalidFlowDefinition,
    InvalidFunctionConfig,
    InvalidInvocationId,
    InvalidName,
    InvalidReplayRequest,
    InvalidTriggerConfig,
    RequestError,
)
from taskservice.statuses import Condition

INVOCATION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
HANDLER = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
WEBHOOK_SCHEMES = ("https://", "http://")
ADMIN = "admin"  # the roles of API and console tokens
READ_ONLY = "read-only"
ROLES = (ADMIN, READ_ONLY)
DESTINATION_SCHEMES = ("queue:", "kafka:", "function:", *WEBHOOK_SCHEMES)
DESTINATION_TARGET = re.compile(r"^[A-Za-z0-9_.\-]{1,249}$")
TEXT = re.compile(r"^[^\x00]*$")  # free text as every ledger can store it (PostgreSQL text holds no NUL)
# Control characters and every character Python calls whitespace, spelled out rather than as \s so that the
# server (Python re), schema validators and generators (ECMA 262, Rust regex) all read the same set.
_NO_SPACE = "\\x00-\\x20\\x7f-\\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000"
WEBHOOK = re.compile(rf"^https?://[^/@{_NO_SPACE}]+(/[^{_NO_SPACE}]*)?$")
DESTINATION = re.compile(rf"^(?:(?:queue|kafka):[A-Za-z0-9_.\-]{{1,249}}|function:{FUNCTION_NAME.pattern[1:-1]}"
                         rf"|https?://[^/@{_NO_SPACE}]+(?:/[^{_NO_SPACE}]*)?)$")


def _check_identifier(value: str, pattern: re.Pattern[str], error: type[RequestError], what: str, longest: int) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise error(f"invalid {what} {value!r}: it must match {pattern.pattern} "
                    f"(a letter or underscore, then up to {longest} letters, digits, '_' or '-')")
    return value


def check_invocation_id(value: str) -> str:
    return _check_identifier(value, INVOCATION_ID, InvalidInvocationId, "invocation id", 127)


def check_execution_name(value: str) -> str:
    """Execution names follow the invocation-id rule (design §7), and an error says which of the two was wrong."""
    return _check_identifier(value, INVOCATION_ID, InvalidInvocationId, "execution name", 127)


def check_function_name(value: str) -> str:
    return _check_identifier(value, FUNCTION_NAME, InvalidName, "function name", 63)


def is_webhook(uri: str) -> bool:
    return uri.startswith(WEBHOOK_SCHEMES)


def check_destination(uri: str) -> str:
    """Accept the destination kinds of design §2; everything else is refused at registration, not at delivery."""
    if is_webhook(uri):
        if not WEBHOOK.fullmatch(uri):
            raise ValueError(f"invalid webhook URL {uri!r}: give https://host[:port]/path, without credentials "
                             "or spaces")
        return uri
    scheme, _, target = uri.partition(":")
    if f"{scheme}:" not in DESTINATION_SCHEMES:
        raise ValueError(f"unknown destination {uri!r}: use queue:<name>, kafka:<topic>, function:<name> or "
                         "https://…")
    if scheme == "function":
        if not FUNCTION_NAME.fullmatch(target):
            raise ValueError(f"invalid function name {target!r} in destination {uri!r}")
    elif not DESTINATION_TARGET.fullmatch(target):
        raise ValueError(f"invalid {scheme} name {target!r} in destination {uri!r}")
    return uri


def _destination_schema(schema: dict[str, Any]) -> None:
    """Publish the rule check_destination enforces (a custom validator leaves no trace in the JSON schema)."""
    for branch in schema.get("anyOf", [schema]):
        if branch.get("type") == "string":
            branch["pattern"] = DESTINATION.pattern
            branch["description"] = "queue:<name>, kafka:<topic>, function:<name> or an http(s) URL"


_DESTINATION_SCHEMA: Any = _destination_schema


def _json_integer(value: Any) -> Any:
    """An integer as JSON Schema reads one: 3 or 3.0, never true, "3" or 3.5 (which pydantic's lax mode would take
    or round), so that what the document calls invalid is refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError("must be an integer")
    return value


def _json_number(value: Any) -> Any:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ValueError("must be a number")
    return value


# Placed after the Field in each Annotated, so that ge/le stay the JSON schema's minimum/maximum.
JSON_INTEGER = BeforeValidator(_json_integer)
JSON_NUMBER = BeforeValidator(_json_number)


class FunctionConfig(BaseModel):
    """What PUT /v1/functions/{name} accepts; bounds as in design §2."""

    model_config = ConfigDict(extra="forbid")

    handler: Annotated[str, Field(description='"package.module:callable"', max_length=256,
                                  json_schema_extra={"pattern": HANDLER.pattern})]
    timeout_s: Annotated[int, Field(ge=1, le=86400), JSON_INTEGER] = 300
    max_retries: Annotated[int, Field(ge=0, le=8), JSON_INTEGER] = 3
    max_event_age_s: Annotated[int, Field(ge=1, le=604800), JSON_INTEGER] = 86400
    on_success: Annotated[str | None, Field(max_length=2048, json_schema_extra=_DESTINATION_SCHEMA)] = None
    on_failure: Annotated[str | None, Field(max_length=2048, json_schema_extra=_DESTINATION_SCHEMA)] = None
    concurrency: Annotated[int, Field(ge=1, le=100000), JSON_INTEGER] | None = None
    description: Annotated[str, Field(max_length=1024, pattern=TEXT.pattern)] = ""

    @field_validator("handler")
    @classmethod
    def _handler_shape(cls, value: str) -> str:
        if not HANDLER.fullmatch(value):
            raise ValueError('handler must look like "package.module:callable"')
        return value

    @field_validator("on_success", "on_failure")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        return None if value is None else check_destination(value)

    @classmethod
    def parse(cls, data: Any) -> FunctionConfig:
        """Validate, turning pydantic's error list into one readable InvalidFunctionConfig."""
        if not isinstance(data, dict):
            raise InvalidFunctionConfig("a function config must be a JSON object")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            problems = [{"field": ".".join(map(str, e["loc"])) or "(body)", "problem": e["msg"]} for e in exc.errors()]
            text = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
            raise InvalidFunctionConfig(f"invalid function config: {text}", details=problems) from exc


class FlowConfig(BaseModel):
    """What PUT /v1/flows/{name} accepts. The definition (FDL, as YAML text or a JSON object) is checked by
    taskservice.flowdef; here only the envelope."""

    model_config = ConfigDict(extra="forbid")

    definition: Annotated[str, Field(min_length=1, max_length=256 * 1024, pattern=TEXT.pattern)] | dict[str, Any]
    description: Annotated[str, Field(max_length=1024, pattern=TEXT.pattern)] = ""
    on_success: Annotated[str | None, Field(max_length=2048, json_schema_extra=_DESTINATION_SCHEMA)] = None
    on_failure: Annotated[str | None, Field(max_length=2048, json_schema_extra=_DESTINATION_SCHEMA)] = None

    @field_validator("on_success", "on_failure")
    @classmethod
    def _destination(cls, value: str | None) -> str | None:
        return None if value is None else check_destination(value)

    @classmethod
    def parse(cls, data: Any) -> FlowConfig:
        if not isinstance(data, dict):
            raise InvalidFlowDefinition("", "a flow config must be a JSON object with a definition")
        try:
            return cls.model_validate(data)
        except ValidationError as exc:
            text = "; ".join(f"{'.'.join(map(str, e['loc'])) or '(body)'}: {e['msg']}" for e in exc.errors())
            raise InvalidFlowDefinition("", f"invalid flow config: {text}") from None


def _parse_model(model: type[BaseModel], data: Any, error: type[RequestError], what: str) -> Any:
    """Validate a JSON object against `model`, turning pydantic's error list into one readable 4xx."""
    if not isinstance(data, dict):
        raise error(f"a {what} must be a JSON object")
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = [{"field": ".".join(map(str, e["loc"])) or "(body)", "problem": e["msg"]} for e in exc.errors()]
        text = "; ".join(f"{p['field']}: {p['problem']}" for p in problems)
        raise error(f"invalid {what}: {text}", details=problems) from exc


EPOCH_MS = re.compile(r"^[0-9]{1,14}$")  # 14 digits end in the year 5138, inside what datetime can hold
_ISO_TIME = re.compile(r"^[0-9]{4}-[0-9]{2}-[0-9]{2}"
                       r"(?:[Tt ][0-9]{2}:[0-9]{2}(?::[0-9]{2}(?:\.[0-9]+)?)?(?:[Zz]|[+-][0-9]{2}:[0-9]{2})?)?$")
TIME_HELP = ("ISO 8601: a date, or a date-time (RFC 3339; seconds and the offset may be left out, a naive time is "
             "UTC); or epoch milliseconds")
# The JSON schema of a time the server takes: generators draw only real calendar times from the formats.
TIME_SCHEMA: dict[str, Any] = {"description": TIME_HELP, "anyOf": [
    {"type": "string", "format": "date-time"}, {"type": "string", "format": "date"},
    {"type": "string", "pattern": EPOCH_MS.pattern}]}
TIME_BODY_SCHEMA: dict[str, Any] = {"description": TIME_HELP, "anyOf": [
    *TIME_SCHEMA["anyOf"], {"type": "integer", "minimum": 0, "maximum": 10**14 - 1}]}


def parse_time(value: Any) -> datetime:
    """The one reading of `since`/`until` for queries and bodies alike (TIME_SCHEMA); ValueError otherwise.

    A time whose offset carries it past what datetime holds (9999-12-31T23:00-05:00) is clamped rather than
    refused: it is a valid RFC 3339 time, and as a bound it still means "everything" or "nothing"."""
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, int | float) and not isinstance(value, bool) and float(value).is_integer() \
            and 0 <= value < 10**14:  # JSON Schema's integer, so 5.0 too
        return datetime.fromtimestamp(int(value) / 1000, timezone.utc)
    elif isinstance(value, str) and EPOCH_MS.fullmatch(value):
        return datetime.fromtimestamp(int(value) / 1000, timezone.utc)
    elif isinstance(value, str) and _ISO_TIME.fullmatch(value):
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00").replace("z", "+00:00"))
    else:
        raise ValueError(f"must be {TIME_HELP}, not {value!r}")
    if parsed.tzinfo is None:
        return parsed.replace(tzinfo=timezone.utc)
    try:
        return parsed.astimezone(timezone.utc)
    except OverflowError:
        return (datetime.max if parsed.year > 1 else datetime.min).replace(tzinfo=timezone.utc)


Time = Annotated[datetime, BeforeValidator(parse_time), WithJsonSchema(TIME_BODY_SCHEMA)]




TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
CONSUMER_GROUP = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class TriggerConfig(BaseModel):
    """What PUT /v1/triggers/{name} accepts: a Kafka event source mapping (bounds as in Function Compute)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kafka"] = "kafka"
    function: Annotated[str, Field(pattern=FUNCTION_NAME.pattern, description="the function each batch invokes")]
    topics: Annotated[list[Annotated[str, Field(pattern=TOPIC.pattern)]],
                      Field(min_length=1, max_length=20, json_schema_extra={"uniqueItems": True})]
    consumer_group: Annotated[str | None, Field(pattern=CONSUMER_GROUP.pattern,
                                                description="default: taskservice-<trigger name>")] = None
    batch_size: Annotated[int, Field(ge=1, le=10_000), JSON_INTEGER] = 100
    batching_window_s: Annotated[float, Field(ge=0, le=15, description="how long to wait to fill a batch"),
                                 JSON_NUMBER] = 0.5
    starting_position: Literal["earliest", "latest"] = "latest"
    enabled: Annotated[bool, Field(strict=True)] = True
    description: Annotated[str, Field(max_length=1024, pattern=TEXT.pattern)] = ""

    @field_validator("topics")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("topics must not repeat")
        return value

    @classmethod
    def parse(cls, data: Any) -> TriggerConfig:
        return _parse_model(cls, data, InvalidTriggerConfig, "trigger config")  # type: ignore[no-any-return]


class ReplayOne(BaseModel):
    """Body of POST /v1/dead-letters/{id}/replay (optional): an edited payload, and `force` to replay again."""

    model_config = ConfigDict(extra="forbid")

    payload: Any = None
    force: Annotated[bool, Field(strict=True)] = False

    @classmethod
    def parse(cls, data: Any) -> ReplayOne:
        replay = _parse_model(cls, data, InvalidReplayRequest, "replay request")
        return replay  # type: ignore[no-any-return]


def _given(name: str) -> dict[str, Any]:
    return {"required": [name], "properties": {name: {"not": {"type": "null"}}}}


_REPLAY_FILTERS = ("function", "condition", "since", "until")


def _replay_many_schema(schema: dict[str, Any]) -> None:
    """Publish what parse() checks across fields: records exclude the filter, target_function needs records."""
    schema["anyOf"] = [
        {"allOf": [_given("records")], "not": {"anyOf": [_given(name) for name in _REPLAY_FILTERS]}},
        {"not": {"anyOf": [_given("records"), _given("target_function")]}},
    ]


class ReplayMany(BaseModel):
    """Body of POST /v1/dead-letters/replay: a filter over the dead-letter store, or external FC failure records."""

    model_config = ConfigDict(extra="forbid", json_schema_extra=_replay_many_schema)

    function: Annotated[str | None, Field(pattern=FUNCTION_NAME.pattern)] = None
    condition: Condition | None = None
    since: Time | None = None
    until: Time | None = None
    limit: Annotated[int, Field(ge=1, le=1000), JSON_INTEGER] = 100
    force: Annotated[bool, Field(strict=True)] = False
    records: Annotated[list[dict[str, Any]] | None, Field(max_length=1000, description=(
        "Function Compute failure records read from an external queue or topic, replayed instead of the store"))] = None
    target_function: Annotated[str | None, Field(pattern=FUNCTION_NAME.pattern, description=(
        "with records: the function to invoke (default: the last segment of requestContext.functionArn)"))] = None

    @classmethod
    def parse(cls, data: Any) -> ReplayMany:
        replay: ReplayMany = _parse_model(cls, data, InvalidReplayRequest, "replay request")
        filters = [getattr(replay, name) for name in _REPLAY_FILTERS]
        if replay.records is not None and any(f is not None for f in filters):
            raise InvalidReplayRequest("give either records or a filter (function, condition, since, until), "
                                       "not both")
        if replay.records is None and replay.target_function is not None:
            raise InvalidReplayRequest("target_function only applies to records")
        return replay
