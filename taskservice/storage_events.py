"""Storage triggers: object events (MinIO's bucket notifications, or writes through taskservice's own storage
boundary) matched against the storage triggers and submitted as Function Compute OSS events.

MinIO's webhook target posts `{"EventName", "Key", "Records": [S3 event records]}` to `POST /v1/storage-events`;
`parse_notification` checks every record before anything is written (an unsafe key, a bad bucket or a record that
is not one is a 422 naming the field). Each matching trigger gets one invocation per event, with an id derived
from trigger, bucket, key and eTag (or sequencer): a notification delivered three times, or one upload reported
by both MinIO and the storage boundary, is one invocation. An event that no trigger watches is accepted and
counted as ignored.
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any
from urllib.parse import unquote_plus

from taskservice.clock import utcnow
from taskservice.errors import DuplicateInvocation, FunctionNotFound, InvalidStorageEvent
from taskservice.ledger.triggers import TriggerStore
from taskservice.storage import InvalidKey, check_bucket, check_key
from taskservice.storage.events import ObjectEvent
from taskservice.submission import Submitter
from taskservice.trigger_specs import FC_EVENT_NAMES, StorageConfig, storage_invocation_id

log = logging.getLogger(__name__)
MAX_RECORDS = 1000


@dataclass
class Published:
    """What one batch of events did."""

    submitted: list[dict[str, str]] = field(default_factory=list)
    duplicates: int = 0
    ignored: int = 0

    def view(self) -> dict[str, Any]:
        return {"submitted": self.submitted, "duplicates": self.duplicates, "ignored": self.ignored}


def _field(record: Any, path: str, index: int) -> Any:
    value = record
    for part in path.split("."):
        if not isinstance(value, dict) or part not in value:
            raise InvalidStorageEvent(f"Records[{index}].{path} is missing: not an S3 event record")
        value = value[part]
    return value


def parse_notification(body: Any) -> list[ObjectEvent]:
    """The events of a MinIO (or S3) notification; InvalidStorageEvent naming the field when one is wrong."""
    if not isinstance(body, dict):
        raise InvalidStorageEvent("a storage notification must be a JSON object with Records")
    records = body.get("Records")
    if not isinstance(records, list) or not records:
        raise InvalidStorageEvent("Records must be a non-empty list of S3 event records")
    if len(records) > MAX_RECORDS:
        raise InvalidStorageEvent(f"Records holds {len(records)} records; at most {MAX_RECORDS} per notification")
    events = []
    for i, record in enumerate(records):
        name = _field(record, "eventName", i)
        if not isinstance(name, str) or not name.startswith("s3:"):
            raise InvalidStorageEvent(f"Records[{i}].eventName must be an S3 event name such as "
                                      f"s3:ObjectCreated:Put, not {name!r}")
        raw_key = _field(record, "s3.object.key", i)
        bucket = _field(record, "s3.bucket.name", i)
        try:
            check_bucket(bucket)
        except InvalidKey as exc:
            raise InvalidStorageEvent(f"Records[{i}].s3.bucket.name: {exc.message}") from None
        if not isinstance(raw_key, str):
            raise InvalidStorageEvent(f"Records[{i}].s3.object.key must be a string")
        key = unquote_plus(raw_key)  # S3 and MinIO send keys URL-encoded
        try:
            check_key(key)
        except InvalidKey as exc:
            raise InvalidStorageEvent(f"Records[{i}].s3.object.key: {exc.message}") from None
        obj = record["s3"]["object"]
        size, etag, sequencer = obj.get("size", 0), obj.get("eTag", ""), obj.get("sequencer", "")
        if isinstance(size, bool) or not isinstance(size, int) or size < 0:
            raise InvalidStorageEvent(f"Records[{i}].s3.object.size must be a whole number of bytes")
        if not isinstance(etag, str) or not isinstance(sequencer, str) or not (etag or sequencer):
            raise InvalidStorageEvent(f"Records[{i}].s3.object needs an eTag or a sequencer (strings)")
        events.append(ObjectEvent(name, bucket, key, size, etag.strip('"'), sequencer, _time(record, i)))
    return events


def _time(record: dict[str, Any], index: int) -> datetime:
    value = record.get("eventTime")
    if value is None:
        return utcnow()
    try:
        parsed = datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        raise InvalidStorageEvent(f"Records[{index}].eventTime must be ISO 8601, not {value!r}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def oss_event(event: ObjectEvent, region: str = "local") -> dict[str, Any]:
    """Function Compute's OSS trigger event for one object event."""
    name = FC_EVENT_NAMES.get(event.event_name, event.event_name.removeprefix("s3:"))
    return {"events": [{
        "eventName": name, "eventSource": "acs:oss", "eventVersion": "1.0",
        "eventTime": f"{event.time.astimezone(timezone.utc):%Y-%m-%dT%H:%M:%S.%f}"[:-3] + "Z",
        "region": region, "userIdentity": {"principalId": "taskservice"},
        "oss": {"ossSchemaVersion": "1.0", "bucket": {"name": event.bucket, "arn": f"acs:oss:{region}::{event.bucket}"},
                "object": {"key": event.key, "size": event.size, "eTag": event.etag,
                           "sequencer": event.sequencer}}}]}


class StorageEvents:
    def __init__(self, triggers: TriggerStore, submitter: Submitter) -> None:
        self.triggers = triggers
        self.submitter = submitter

    def publish(self, events: list[ObjectEvent]) -> Published:
        """Submit one invocation per (matching trigger, event); safe to call again with the same events."""
        result = Published()
        watching = [(t, t.spec()) for t in self.triggers.list(enabled_only=True, kind="storage")]
        for event in events:
            matched = [(t, s) for t, s in watching
                       if isinstance(s, StorageConfig) and s.matches(event.bucket, event.event_name, event.key)]
            if not matched:
                result.ignored += 1
                continue
            for trigger, spec in matched:
                iid = storage_invocation_id(trigger.name, event.bucket, event.key, event.version)
                try:
                    self.submitter.submit(spec.function, oss_event(event), invocation_id=iid)
                except DuplicateInvocation:
                    result.duplicates += 1
                    continue
                except FunctionNotFound:
                    log.warning("storage trigger %s: function %s does not exist; event for %s/%s dropped",
                                trigger.name, spec.function, event.bucket, event.key)
                    continue
                result.submitted.append({"trigger": trigger.name, "function": spec.function, "invocationId": iid})
                self.triggers.bump_state(trigger.name, add={"events": 1}, values={
                    "lastEvent": f"{event.event_name} {event.key}", "lastEventTime": event.time.isoformat()})
        if result.ignored:
            log.info("%d storage event(s) matched no trigger and were ignored", result.ignored)
        return result
