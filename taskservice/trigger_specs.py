"""What PUT /v1/triggers/{name} accepts for each trigger kind, and the pure rules the event sources share (design §8).

`kind` is `kafka` (the default, today's event source mappings: taskservice.specs.TriggerConfig), `timer`,
`storage` or `queue`; each kind's model forbids the fields of the others, so a mixed body is a 422 naming the field.
Also here, because the API, the scheduler and the storage boundary must agree on them: the timer schedule (cron
through croniter, `@every`, `CRON_TZ=`), the invocation ids derived from an event (so a tick, a redelivered
notification or a re-read message never invokes twice) and Function Compute's event shapes.
"""
from __future__ import annotations

import hashlib
import re
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone, tzinfo
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from croniter import CroniterBadCronError, CroniterBadDateError, CroniterNotAlphaError, croniter
from pydantic import BaseModel, ConfigDict, Field, field_validator

from taskservice.errors import InvalidTriggerConfig
from taskservice.specs import FUNCTION_NAME, JSON_INTEGER, JSON_NUMBER, TEXT, TriggerConfig, _parse_model

KINDS = ("kafka", "timer", "storage", "queue")
_EVERY = re.compile(r"^@every\s+(?=\d)(?:(\d+)h)?(?:(\d+)m)?(?:(\d+)s)?$")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
AFFIX = re.compile(r"^[^\x00-\x1f\x7f]*$")  # a key prefix or suffix: no control characters
BUCKET = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
QUEUE_NAME = re.compile(r"^[A-Za-z0-9_.:\-]{1,200}$")

# --- timer -----------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Schedule:
    """When a timer fires. `@every N` ticks at the multiples of N seconds since the Unix epoch, so every scheduler
    computes the same ticks; cron ticks come from croniter in the schedule's time zone (UTC unless CRON_TZ=)."""

    text: str
    zone: tzinfo
    every_s: int | None = None
    cron: str | None = None
    with_seconds: bool = False

    @classmethod
    def parse(cls, text: str) -> Schedule:
        """Raises ValueError with a message a person can act on."""
        if not isinstance(text, str) or not text.strip():
            raise ValueError("give a cron expression (6 fields with seconds, or 5) or @every 30s|4m|1h")
        expr = text.strip()
        zone: tzinfo = timezone.utc
        if expr.startswith("CRON_TZ="):
            name, _, expr = expr[len("CRON_TZ="):].partition(" ")
            try:
                zone = ZoneInfo(name)
            except (ZoneInfoNotFoundError, ValueError):
                raise ValueError(f"unknown time zone {name!r} in CRON_TZ= (use an Area/City name such as "
                                 "Europe/Berlin)") from None
            expr = expr.strip()
        if expr.startswith("@every"):
            match = _EVERY.fullmatch(expr)
            if match is None:
                raise ValueError(f"invalid period {expr!r}: write @every 30s, @every 4m, @every 1h or @every 1h30m")
            hours, minutes, seconds = (int(g or 0) for g in match.groups())
            period = hours * 3600 + minutes * 60 + seconds
            if period < 1:
                raise ValueError(f"the period of {expr!r} is under 1 s; the shortest is @every 1s")
            return cls(text=text, zone=zone, every_s=period)
        fields = expr.split()
        if len(fields) not in (5, 6):
            raise ValueError(f"cron {expr!r} has {len(fields)} fields; give 6 (seconds first, as in Function "
                             "Compute) or 5")
        schedule = cls(text=text, zone=zone, cron=" ".join(fields), with_seconds=len(fields) == 6)
        try:
            schedule.next_after(datetime.now(timezone.utc))
        except CroniterBadDateError:  # (a subclass of the next one) valid fields that no date matches
            raise ValueError(f"cron {expr!r} never fires") from None
        except (CroniterBadCronError, CroniterNotAlphaError, ValueError, KeyError) as exc:
            raise ValueError(f"invalid cron {expr!r}: {exc}") from None
        except Exception as exc:  # croniter on odd input (huge numbers, odd characters): still the caller's error
            raise ValueError(f"invalid cron {expr!r}: {type(exc).__name__}") from None
        return schedule

    def next_after(self, moment: datetime) -> datetime:
        """The first tick strictly after `moment` (aware), in UTC."""
        if self.every_s is not None:
            stamp = int(moment.timestamp() // self.every_s + 1) * self.every_s
            return datetime.fromtimestamp(stamp, timezone.utc)
        assert self.cron is not None
        it = croniter(self.cron, moment.astimezone(self.zone), second_at_beginning=self.with_seconds,
                      max_years_between_matches=5)
        tick: datetime = it.get_next(datetime)
        return tick.astimezone(timezone.utc)

    def ticks(self, after: datetime, until: datetime, *, limit: int = 100_000) -> Iterator[datetime]:
        """Ticks in (after, until], oldest first, at most `limit` of them."""
        tick = self.next_after(after)
        for _ in range(limit):
            if tick > until:
                return
            yield tick
            tick = self.next_after(tick)


def timer_invocation_id(trigger: str, tick: datetime) -> str:
    """`timer_<trigger>_<UTC tick>`: the same for every scheduler, so one tick is one invocation."""
    return f"timer_{trigger}_{tick.astimezone(timezone.utc):%Y%m%dT%H%M%SZ}"


def timer_event(trigger: str, tick: datetime, payload: str) -> dict[str, Any]:
    """Function Compute's timer event."""
    return {"triggerTime": f"{tick.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%SZ}", "triggerName": trigger,
            "payload": payload}


# --- storage ---------------------------------------------------------------------------------------------------
#: S3 / MinIO event names a storage trigger may name, and the names Function Compute's OSS events give them.
FC_EVENT_NAMES = {
    "s3:ObjectCreated:Put": "ObjectCreated:PutObject",
    "s3:ObjectCreated:Post": "ObjectCreated:PostObject",
    "s3:ObjectCreated:Copy": "ObjectCreated:CopyObject",
    "s3:ObjectCreated:CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
    "s3:ObjectRemoved:Delete": "ObjectRemoved:DeleteObject",
    "s3:ObjectRemoved:DeleteMarkerCreated": "ObjectRemoved:DeleteMarkerCreated",
}
EVENT_PATTERNS = frozenset({"s3:ObjectCreated:*", "s3:ObjectRemoved:*", *FC_EVENT_NAMES})
EventPattern = Literal["s3:ObjectCreated:*", "s3:ObjectRemoved:*", "s3:ObjectCreated:Put", "s3:ObjectCreated:Post",
                       "s3:ObjectCreated:Copy", "s3:ObjectCreated:CompleteMultipartUpload", "s3:ObjectRemoved:Delete",
                       "s3:ObjectRemoved:DeleteMarkerCreated"]


def event_matches(pattern: str, name: str) -> bool:
    return name.startswith(pattern[:-1]) if pattern.endswith(":*") else name == pattern


def storage_invocation_id(trigger: str, bucket: str, key: str, version: str) -> str:
    """`oss_<trigger>_<hash of bucket, key and eTag (or sequencer)>`: a redelivered notification, or the same
    upload reported both by MinIO and by taskservice's own storage boundary, is one invocation."""
    digest = hashlib.sha256("\0".join((bucket, key, version)).encode()).hexdigest()[:40]
    return f"oss_{trigger}_{digest}"


def _check_affix(value: str, what: str) -> str:
    if len(value.encode()) > 1024:
        raise ValueError(f"{what} is longer than 1024 bytes")
    if _CONTROL.search(value):
        raise ValueError(f"{what} contains control characters")
    if ".." in value.split("/"):
        raise ValueError(f"{what} has a '..' segment")
    return value


# --- the models ------------------------------------------------------------------------------------------------
_Function = Annotated[str, Field(pattern=FUNCTION_NAME.pattern, description="the function each event invokes")]


class TimerConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["timer"]
    function: _Function
    cron: Annotated[str, Field(max_length=256, description=(
        "6 fields with seconds (Function Compute), or 5; @every 30s|4m|1h; optional CRON_TZ=Area/City prefix"))]
    payload: Annotated[str, Field(max_length=8 * 1024, pattern=TEXT.pattern,
                                  description="passed as the event's payload")] = ""
    enabled: Annotated[bool, Field(strict=True)] = True
    description: Annotated[str, Field(max_length=1024, pattern=TEXT.pattern)] = ""

    @field_validator("cron")
    @classmethod
    def _schedule(cls, value: str) -> str:
        Schedule.parse(value)
        return value

    @property
    def schedule(self) -> Schedule:
        return Schedule.parse(self.cron)


class StorageConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["storage"]
    function: _Function
    bucket: Annotated[str, Field(pattern=BUCKET.pattern, description="the bucket watched")]
    events: Annotated[list[EventPattern], Field(min_length=1, max_length=20, json_schema_extra={"uniqueItems": True},
                                                description=("s3:ObjectCreated:*, s3:ObjectRemoved:* or exact names "
                                                             "such as s3:ObjectCreated:Put"))]
    prefix: Annotated[str, Field(max_length=1024, pattern=AFFIX.pattern)] = ""
    suffix: Annotated[str, Field(max_length=1024, pattern=AFFIX.pattern)] = ""
    enabled: Annotated[bool, Field(strict=True)] = True
    description: Annotated[str, Field(max_length=1024, pattern=TEXT.pattern)] = ""

    @field_validator("bucket")
    @classmethod
    def _bucket(cls, value: str) -> str:
        if ".." in value:
            raise ValueError("a bucket name must not contain '..'")
        return value

    @field_validator("events", mode="before")
    @classmethod
    def _events(cls, value: Any) -> Any:
        if isinstance(value, list):
            unknown = [name for name in value if isinstance(name, str) and name not in EVENT_PATTERNS]
            if unknown:
                raise ValueError(f"unknown event name(s) {', '.join(map(repr, unknown))}; one of "
                                 f"{', '.join(sorted(EVENT_PATTERNS))}")
        return value

    @field_validator("events")
    @classmethod
    def _distinct(cls, value: list[str]) -> list[str]:
        if len(set(value)) != len(value):
            raise ValueError("events must not repeat")
        return value

    @field_validator("prefix")
    @classmethod
    def _prefix(cls, value: str) -> str:
        return _check_affix(value, "prefix")

    @field_validator("suffix")
    @classmethod
    def _suffix(cls, value: str) -> str:
        return _check_affix(value, "suffix")

    def matches(self, bucket: str, event_name: str, key: str) -> bool:
        return (self.enabled and bucket == self.bucket and key.startswith(self.prefix) and key.endswith(self.suffix)
                and any(event_matches(p, event_name) for p in self.events))


class QueueConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")

    kind: Literal["queue"]
    function: _Function
    queue: Annotated[str, Field(pattern=QUEUE_NAME.pattern, description="a queue on the configured broker")]
    batch_size: Annotated[int, Field(ge=1, le=10_000), JSON_INTEGER] = 10
    batching_window_s: Annotated[float, Field(ge=0, le=15, description="how long to wait to fill a batch"),
                                 JSON_NUMBER] = 1.0
    enabled: Annotated[bool, Field(strict=True)] = True
    description: Annotated[str, Field(max_length=1024, pattern=TEXT.pattern)] = ""


AnyTriggerConfig = TriggerConfig | TimerConfig | StorageConfig | QueueConfig
_MODELS: dict[str, type[BaseModel]] = {"timer": TimerConfig, "storage": StorageConfig, "queue": QueueConfig}


def parse_trigger(data: Any) -> AnyTriggerConfig:
    """Validate a trigger body of any kind: InvalidTriggerConfig (422) naming each bad field."""
    if not isinstance(data, dict):
        raise InvalidTriggerConfig("a trigger config must be a JSON object")
    kind = data.get("kind", "kafka")
    if kind not in KINDS:
        raise InvalidTriggerConfig(f"invalid trigger config: kind: must be one of {', '.join(KINDS)}, not {kind!r}",
                                   details=[{"field": "kind", "problem": f"one of {', '.join(KINDS)}"}])
    if kind == "kafka":
        return TriggerConfig.parse(data)
    parsed: AnyTriggerConfig = _parse_model(_MODELS[kind], data, InvalidTriggerConfig, "trigger config")
    return parsed
