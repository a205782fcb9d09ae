"""Trigger kinds and their rules: schedules (croniter with seconds, @every, CRON_TZ), event ids, bad input → 422."""
from __future__ import annotations

from datetime import datetime, timezone

import pytest

from taskservice.errors import InvalidTriggerConfig
from taskservice.specs import TriggerConfig
from taskservice.trigger_specs import (
    QueueConfig,
    Schedule,
    StorageConfig,
    TimerConfig,
    parse_trigger,
    storage_invocation_id,
    timer_event,
    timer_invocation_id,
)

UTC = timezone.utc


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_six_fields_have_seconds_first_and_five_fields_tick_on_the_minute() -> None:
    six = Schedule.parse("*/15 * * * * *")
    assert six.next_after(at("2026-12-01T10:00:01")) == at("2026-12-01T10:00:15")
    five = Schedule.parse("*/5 * * * *")
    assert five.next_after(at("2026-12-01T10:00:01")) == at("2026-12-01T10:05:00")
    ticks = list(Schedule.parse("0 */5 * * * *").ticks(at("2026-12-01T10:00:00"), at("2026-12-01T10:16:00")))
    assert ticks == [at("2026-12-01T10:05:00"), at("2026-12-01T10:10:00"), at("2026-12-01T10:15:00")]


def test_cron_tz_is_honoured() -> None:
    shanghai = Schedule.parse("CRON_TZ=Asia/Shanghai 0 0 9 * * *")
    assert shanghai.next_after(at("2026-12-01T00:00:00")) == at("2026-12-01T01:00:00")  # 09:00 +08:00
    berlin = Schedule.parse("CRON_TZ=Europe/Berlin 0 30 2 * * *")  # a DST-free date in winter: +01:00
    assert berlin.next_after(at("2026-12-01T00:00:00")) == at("2026-12-01T01:30:00")


def test_every_ticks_on_multiples_of_its_period_so_every_scheduler_agrees() -> None:
    every = Schedule.parse("@every 1h30m")
    assert every.every_s == 5400
    tick = every.next_after(at("2026-12-01T10:00:00"))
    assert tick.timestamp() % 5400 == 0 and tick > at("2026-12-01T10:00:00")
    assert Schedule.parse("@every 1s").next_after(at("2026-12-01T10:00:00")) == at("2026-12-01T10:00:01")


@pytest.mark.parametrize(("cron", "words"), [
    ("61 * * * * *", "invalid cron"), ("* * *", "fields"), ("@every 0s", "under 1 s"), ("@every 500ms", "period"),
    ("@every", "period"), ("CRON_TZ=Mars/Olympus 0 * * * * *", "unknown time zone"), ("", "give a cron"),
    ("0 0 0 31 2 *", "never fires"),
])
def test_bad_schedules_are_refused_naming_the_field(cron: str, words: str) -> None:
    with pytest.raises(InvalidTriggerConfig) as refused:
        parse_trigger({"kind": "timer", "function": "f", "cron": cron})
    assert "cron" in refused.value.message and words in refused.value.message


def test_each_kind_parses_and_mixed_or_unknown_fields_are_refused() -> None:
    assert isinstance(parse_trigger({"function": "f", "topics": ["t"]}), TriggerConfig)  # kafka stays the default
    assert isinstance(parse_trigger({"kind": "timer", "function": "f", "cron": "@every 5s"}), TimerConfig)
    assert isinstance(parse_trigger({"kind": "storage", "function": "f", "bucket": "media",
                                     "events": ["s3:ObjectCreated:*"]}), StorageConfig)
    assert isinstance(parse_trigger({"kind": "queue", "function": "f", "queue": "orders"}), QueueConfig)
    for body, field in [({"kind": "timer", "function": "f", "cron": "@every 5s", "topics": ["t"]}, "topics"),
                        ({"kind": "storage", "function": "f", "bucket": "media", "events": ["s3:Object:Put"]},
                         "events"),
                        ({"kind": "storage", "function": "f", "bucket": "Bad_Bucket", "events": ["s3:ObjectCreated:*"]},
                         "bucket"),
                        ({"kind": "storage", "function": "f", "bucket": "media", "events": ["s3:ObjectCreated:*"],
                          "prefix": "in/../etc"}, "prefix"),
                        ({"kind": "queue", "function": "f", "queue": "orders", "batch_size": 0}, "batch_size"),
                        ({"kind": "queue", "function": "f", "queue": "orders", "cron": "@every 1s"}, "cron"),
                        ({"kind": "cron", "function": "f"}, "kind")]:
        with pytest.raises(InvalidTriggerConfig) as refused:
            parse_trigger(body)
        assert field in refused.value.message, (body, refused.value.message)


def test_storage_matching_by_bucket_event_prefix_and_suffix() -> None:
    config = StorageConfig(kind="storage", function="f", bucket="media", events=["s3:ObjectCreated:*"],
                           prefix="in/", suffix=".mov")
    assert config.matches("media", "s3:ObjectCreated:Put", "in/talk.mov")
    assert not config.matches("media", "s3:ObjectRemoved:Delete", "in/talk.mov")
    assert not config.matches("media", "s3:ObjectCreated:Put", "out/talk.mov")
    assert not config.matches("media", "s3:ObjectCreated:Put", "in/talk.mp4")
    assert not config.matches("other", "s3:ObjectCreated:Put", "in/talk.mov")


def test_event_ids_are_deterministic_and_valid_invocation_ids() -> None:
    tick = at("2026-12-01T10:00:00")
    assert timer_invocation_id("nightly", tick) == "timer_nightly_20261201T100000Z"
    assert timer_event("nightly", tick, "hi") == {"triggerTime": "2026-12-01T10:00:00Z", "triggerName": "nightly",
                                                  "payload": "hi"}
    one = storage_invocation_id("t" * 64, "media", "in/a.mov", "etag1")
    assert one == storage_invocation_id("t" * 64, "media", "in/a.mov", "etag1") and len(one) <= 128
    assert one != storage_invocation_id("t" * 64, "media", "in/a.mov", "etag2")
