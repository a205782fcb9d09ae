"""transcode through a real worker, moto's S3 API and Debian ffmpeg: every format, the refusals, and stop."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from workers.media.ffmpeg import probe

if TYPE_CHECKING:
    from tests.integration.media.env import MediaEnv

EXPECTED = {  # format → (video codec, audio codec) ffprobe must find in the output
    "mp4": ("h264", "aac"), "mov": ("h264", "aac"), "flv": ("h264", "aac"), "avi": ("mpeg4", "mp3"),
    "webm": ("vp9", "opus"), "m3u8": ("h264", "aac"), "mp3": (None, "mp3"),
}


def test_transcode_to_every_format_verified_with_ffprobe(media: MediaEnv, short_clip: str, tmp_path: Path,
                                                         submit: Any, wait_for_status: Any, unique: Any) -> None:
    out_dir = unique("out")
    ids = {}
    for fmt in EXPECTED:
        event = {"bucket": media.bucket, "object": short_clip, "output_dir": out_dir, "dst_format": fmt,
                 "resolution": "160x120", "preset": "ultrafast"}
        if fmt == "mp4":
            event["watermark_text"] = "taskservice: it's 100% \\ {text}"  # filter-graph characters stay text
        if fmt == "flv":
            event["bitrate"] = "300k"
        ids[fmt] = submit(media.client, "transcode", event, unique(f"t_{fmt}"))
    for fmt, iid in ids.items():
        inv = wait_for_status(media.services, "transcode", iid, {"Succeeded", "Failed", "Invalid"}, timeout_s=90)
        assert inv.status.value == "Succeeded", (fmt, inv.error)
        result = json.loads(inv.result)
        first = result["outputs"][0]
        ext = "m3u8" if fmt == "m3u8" else fmt
        expected_key = f"{out_dir}/{iid}/index.m3u8" if fmt == "m3u8" else f"{out_dir}/{iid}.{ext}"
        assert first["key"] == expected_key and first["size"] > 0
        assert abs(first["duration"] - 3.0) < 0.3
        if fmt == "m3u8":  # the playlist plays through the uploaded segments
            keys = [o["key"] for o in result["outputs"]]
            assert len(keys) >= 2 and all(k.startswith(f"{out_dir}/{iid}/seg_") for k in keys[1:])
            local = tmp_path / "hls"
            local.mkdir()
            for key in keys:
                media.fetch(key, local / key.rsplit("/", 1)[1])
            assert "seg_00000.ts" in (local / "index.m3u8").read_text()
            probed = probe(local / "seg_00000.ts")
        else:
            probed = probe(media.fetch(first["key"], tmp_path / f"out.{ext}"))
            assert abs(probed.duration_s - 3.0) < 0.3
        video, audio = EXPECTED[fmt]
        assert (probed.video_codec, probed.audio_codec) == (video, audio), fmt
        if video:
            assert (probed.width, probed.height) == (160, 120)
        detail = media.client.get(f"/v1/functions/transcode/invocations/{iid}").get_json()
        assert detail["progress"]["percent"] == 100.0


def _evil_inputs(tmp_path: Path) -> dict[str, bytes]:
    return {
        "playlist": b"#EXTM3U\n#EXT-X-TARGETDURATION:10\n#EXTINF:10,\nfile:///etc/passwd\n#EXT-X-ENDLIST\n",
        "concat": b"ffconcat version 1.0\nfile /etc/passwd\n",
        "concat_plain": b"file '/etc/passwd'\n",
    }


@pytest.mark.parametrize("case", ["playlist", "concat", "concat_plain", "dotdot", "dash_name", "dash_output"])
def test_unsafe_input_is_refused_clearly_and_writes_nothing(media: MediaEnv, case: str, tmp_path: Path,
                                                            short_clip: str,
                                                            submit: Any, wait_for_status: Any, unique: Any) -> None:
    out_dir = unique("refused")
    key = short_clip
    if case in ("playlist", "concat", "concat_plain"):
        key = f"inputs/{unique(case)}.mp4"  # a playlist disguised as an mp4
        (tmp_path / "evil").write_bytes(_evil_inputs(tmp_path)[case])
        media.storage.upload(media.bucket, key, tmp_path / "evil")
    elif case == "dotdot":
        key = "inputs/../../etc/passwd"
    elif case == "dash_name":
        key = "inputs/-i.mp4"
    event = {"bucket": media.bucket, "object": key, "output_dir": "-o" if case == "dash_output" else out_dir,
             "dst_format": "mp4"}
    iid = submit(media.client, "transcode", event, unique("bad"))
    inv = wait_for_status(media.services, "transcode", iid, {"Succeeded", "Failed", "Invalid"}, timeout_s=90)
    assert inv.status.value == "Invalid" and inv.attempts == 1, (inv.status, inv.error)
    expected = {"playlist": "HLS playlist", "concat": "concat list", "concat_plain": "concat list",
                "dotdot": "'..'", "dash_name": "starting with '-'", "dash_output": "starting with '-'"}[case]
    assert expected in inv.error
    assert media.storage.list(media.bucket, out_dir) == []


def test_stopping_a_transcode_kills_its_ffmpeg(media: MediaEnv, long_clip: tuple[str, Path],
                                               submit: Any, wait_for_status: Any, process_gone: Any, unique: Any,
                                               ffmpeg_children: Any) -> None:
    key, _ = long_clip
    event = {"bucket": media.bucket, "object": key, "output_dir": unique("stop"), "dst_format": "webm",
             "preset": "veryslow", "resolution": "640x480"}
    iid = submit(media.client, "transcode", event, unique("stop"))
    wait_for_status(media.services, "transcode", iid, {"Running"}, timeout_s=90)
    pids = ffmpeg_children(media.worker)
    answer = media.client.post(f"/v1/functions/transcode/invocations/{iid}/stop")
    assert answer.status_code == 202
    inv = wait_for_status(media.services, "transcode", iid, {"Stopped"}, timeout_s=20)
    assert inv.condition == "Stopped"
    for pid in pids:
        assert process_gone(pid), f"ffmpeg {pid} outlived the stop"
