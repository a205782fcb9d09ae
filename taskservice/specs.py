"""Validation of what callers send: names, invocation ids and function configs (design §2)."""
from __future__ import annotations

import re
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from taskservice.errors import InvalidFunctionConfig, InvalidInvocationId, InvalidName, RequestError

INVOCATION_ID = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,127}$")
FUNCTION_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]{0,63}$")
_DOTTED = r"[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*"
HANDLER = re.compile(rf"^{_DOTTED}:{_DOTTED}$")
DESTINATION_SCHEMES = ("queue:", "kafka:", "function:", "https://", "http://")
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


def check_destination(uri: str) -> str:
    """Accept the destination kinds of design §2; everything else is refused at registration, not at delivery."""
    if uri.startswith(("https://", "http://")):
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
