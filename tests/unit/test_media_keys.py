"""Key checks, event validation, child ids and shard plans: the rules that decide what may reach storage or ffmpeg."""
from __future__ import annotations

import pytest

from taskservice.specs import INVOCATION_ID
from taskservice.storage import InvalidKey, check_bucket, check_key
from workers.context import InvalidEvent
from workers.handlers.range_copy import MIN_PART, shard_plan
from workers.media.formats import parse_format, parse_options
from workers.media.keys import child_id, parse_source
from workers.media.work import local_input_name


@pytest.mark.parametrize("key", ["", "/etc/passwd", "a/../b", "..", "a//b", "a/./b", "-i.mp4", "in/-y", "a\\b",
                                 "a\nb", "a\x00b", "x" * 1025])
def test_unsafe_keys_are_refused(key: str) -> None:
    with pytest.raises(InvalidKey):
        check_key(key)


@pytest.mark.parametrize("key", ["a.mp4", "in/clip 1.mp4", "deep/er/päth/x-y_z.mov", "a..b/c"])
def test_ordinary_keys_pass(key: str) -> None:
    assert check_key(key) == key


@pytest.mark.parametrize("bucket", ["", "ab", "UPPER", "a_b", "../x", "a..b", "-ab"])
def test_bad_bucket_names_are_refused(bucket: str) -> None:
    with pytest.raises(InvalidKey):
        check_bucket(bucket)


def test_a_bad_event_is_an_invalid_event_not_a_retryable_failure() -> None:
    with pytest.raises(InvalidEvent, match="starting with '-'"):
        parse_source({"bucket": "media", "object": "in/a.mp4", "output_dir": "-out"})
    with pytest.raises(InvalidEvent, match="must be a JSON object"):
        parse_source(["not", "a", "dict"])


def test_encoding_options_only_name_allowed_codecs_and_shapes() -> None:
    webm = parse_format("webm")
    assert parse_options({}, webm).video_codec == "vp9"
    for bad in ({"video_codec": "h264"}, {"video_codec": "-x"}, {"resolution": "1281x720"},
                {"resolution": "720p"}, {"bitrate": "2M; rm"}, {"preset": "-y"}, {"watermark_text": "a\nb"}):
        with pytest.raises(InvalidEvent):
            parse_options(bad, webm)
    with pytest.raises(InvalidEvent, match="dst_format"):
        parse_format("gif")
    opts = parse_options({"resolution": "640x360", "bitrate": "1.5M", "watermark_text": "50% off: 'now'"},
                         parse_format("MP4"))
    assert opts.public() == {"dst_format": "mp4", "audio_codec": "aac", "preset": "veryfast", "video_codec": "h264",
                             "resolution": "640x360", "bitrate": "1.5M", "watermark_text": "50% off: 'now'"}


def test_child_ids_derive_from_the_parent_and_stay_valid() -> None:
    assert child_id("job1", "mp4") == "job1-mp4"
    long_parent = "p" * 128
    first, second = child_id(long_parent, "seg00001"), child_id(long_parent, "seg00002")
    assert INVOCATION_ID.fullmatch(first) and len(first) <= 128
    assert first != second and first == child_id(long_parent, "seg00001")  # deterministic: a retry re-adopts


def test_local_file_names_never_come_from_the_key() -> None:
    assert local_input_name("in/-i.mp4") == "input.mp4"
    assert local_input_name("in/clip.m3u8;rm") == "input.bin"
    assert local_input_name("in/noext") == "input.bin"


@pytest.mark.parametrize("size,shards", [(200 * 2**20, 8), (12 * 2**20, 8), (MIN_PART - 1, 4), (0, 3),
                                         (100 * 2**20 + 7, 3)])
def test_shard_plans_cover_the_object_once_with_parts_of_at_least_5_mib(size: int, shards: int) -> None:
    plan = shard_plan(size, shards)
    assert 1 <= len(plan) <= shards
    assert sum(length for _, length in plan) == size
    assert all(offset == prev_off + prev_len for (prev_off, prev_len), (offset, _) in zip(plan, plan[1:], strict=False))
    assert all(length >= MIN_PART for _, length in plan[:-1])
