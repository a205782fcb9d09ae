"""Validation of what callers send: names, invocation ids and function configs (design §2)."""
from __future__ import annotations

import re
from datetime import datetime, timezone
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskservice.errors import (
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
DESTINATION_SCHEMES = ("queue:", "kafka:", "function:", *WEBHOOK_SCHEMES)
DESTINATION_TARGET = re.compile(r"^[A-Za-z0-9_.\-]{1,249}$")


def _check_identifier(value: str, pattern: re.Pattern[str], error: type[RequestError], what: str, longest: int) -> str:
    if not isinstance(value, str) or not pattern.fullmatch(value):
        raise error(f"invalid {what} {value!r}: it must match {pattern.pattern} "
                    f"(a letter or underscore, then up to {longest} letters, digits, '_' or '-')")
    return value


def check_invocation_id(value: str) -> str:
    return _check_identifier(value, INVOCATION_ID, InvalidInvocationId, "invocation id", 127)


def check_function_name(value: str) -> str:
    return _check_identifier(value, FUNCTION_NAME, InvalidName, "function name", 63)


def is_webhook(uri: str) -> bool:
    return uri.startswith(WEBHOOK_SCHEMES)


def check_destination(uri: str) -> str:
    """Accept the destination kinds of design §2; everything else is refused at registration, not at delivery."""
    if is_webhook(uri):
        host = uri.split("://", 1)[1].split("/", 1)[0]
        if not host or "@" in host or any(c.isspace() for c in uri):
            raise ValueError(f"invalid webhook URL {uri!r}: give https://host[:port]/path, without credentials")
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


class FunctionConfig(BaseModel):
    """What PUT /v1/functions/{name} accepts; bounds as in design §2."""

    model_config = ConfigDict(extra="forbid")

    handler: Annotated[str, Field(description='"package.module:callable"', max_length=256)]
    timeout_s: Annotated[int, Field(ge=1, le=86400)] = 300
    max_retries: Annotated[int, Field(ge=0, le=8)] = 3
    max_event_age_s: Annotated[int, Field(ge=1, le=604800)] = 86400
    on_success: Annotated[str | None, Field(max_length=2048)] = None
    on_failure: Annotated[str | None, Field(max_length=2048)] = None
    concurrency: Annotated[int | None, Field(ge=1, le=100000)] = None
    description: Annotated[str, Field(max_length=1024)] = ""

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


TOPIC = re.compile(r"^[A-Za-z0-9._-]{1,249}$")
CONSUMER_GROUP = re.compile(r"^[A-Za-z0-9._-]{1,255}$")


class TriggerConfig(BaseModel):
    """What PUT /v1/triggers/{name} accepts: a Kafka event source mapping (bounds as in Function Compute)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["kafka"] = "kafka"
    function: Annotated[str, Field(pattern=FUNCTION_NAME.pattern, description="the function each batch invokes")]
    topics: Annotated[list[Annotated[str, Field(pattern=TOPIC.pattern)]], Field(min_length=1, max_length=20)]
    consumer_group: Annotated[str | None, Field(pattern=CONSUMER_GROUP.pattern,
                                                description="default: taskservice-<trigger name>")] = None
    batch_size: Annotated[int, Field(ge=1, le=10_000)] = 100
    batching_window_s: Annotated[float, Field(ge=0, le=15, description="how long to wait to fill a batch")] = 0.5
    starting_position: Literal["earliest", "latest"] = "latest"
    enabled: Annotated[bool, Field(strict=True)] = True
    description: Annotated[str, Field(max_length=1024)] = ""

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
        if data is None:
            return cls()
        replay = _parse_model(cls, data, InvalidReplayRequest, "replay request")
        return replay  # type: ignore[no-any-return]


class ReplayMany(BaseModel):
    """Body of POST /v1/dead-letters/replay: a filter over the dead-letter store, or external FC failure records."""

    model_config = ConfigDict(extra="forbid")

    function: Annotated[str | None, Field(pattern=FUNCTION_NAME.pattern)] = None
    condition: Condition | None = None
    since: datetime | None = None
    until: datetime | None = None
    limit: Annotated[int, Field(ge=1, le=1000)] = 100
    force: Annotated[bool, Field(strict=True)] = False
    records: Annotated[list[dict[str, Any]] | None, Field(max_length=1000, description=(
        "Function Compute failure records read from an external queue or topic, replayed instead of the store"))] = None
    target_function: Annotated[str | None, Field(pattern=FUNCTION_NAME.pattern, description=(
        "with records: the function to invoke (default: the last segment of requestContext.functionArn)"))] = None

    @field_validator("since", "until")
    @classmethod
    def _aware(cls, value: datetime | None) -> datetime | None:
        return value if value is None or value.tzinfo else (value.replace(tzinfo=timezone.utc))

    @classmethod
    def parse(cls, data: Any) -> ReplayMany:
        replay: ReplayMany = _parse_model(cls, data, InvalidReplayRequest, "replay request")
        filters = (replay.function, replay.condition, replay.since, replay.until)
        if replay.records is not None and any(f is not None for f in filters):
            raise InvalidReplayRequest("give either records or a filter (function, condition, since, until), "
                                       "not both")
        if replay.records is None and replay.target_function is not None:
            raise InvalidReplayRequest("target_function only applies to records")
        return replay
