"""Fan-out to several formats and split → parallel transcode → merge, through real workers, S3 API and ffmpeg."""
from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Any

from workers.media.ffmpeg import count_frames, probe

if TYPE_CHECKING:
    from tests.integration.media.env import MediaEnv


def test_fan_out_to_three_formats_reports_every_output(media: MediaEnv, short_clip: str, tmp_path: Path,
                                                       submit: Any, wait_for_status: Any, unique: Any) -> None:
    iid = submit(media.client, "transcode-fanout", {"bucket": media.bucket, "object": short_clip,
                                                    "output_dir": unique("fan"), "dst_formats": ["mp4", "flv", "webm"],
                                                    "preset": "ultrafast", "resolution": "160x120"}, unique("fan"))
    inv = wait_for_status(media.services, "transcode-fanout", iid, {"Succeeded", "Failed", "Invalid"}, timeout_s=90)
    assert inv.status.value == "Succeeded", inv.error
    result = json.loads(inv.result)
    assert sorted(o["key"].rsplit(".", 1)[1] for o in result["outputs"]) == ["flv", "mp4", "webm"]
    for output in result["outputs"]:
        local = media.fetch(output["key"], tmp_path / output["key"].rsplit("/", 1)[1])
        assert abs(probe(local).duration_s - 3.0) < 0.3 and output["size"] == local.stat().st_size
    detail = media.client.get(f"/v1/functions/transcode-fanout/invocations/{iid}").get_json()
    assert sorted(c["invocationId"] for c in detail["children"]) == [f"{iid}-flv", f"{iid}-mp4", f"{iid}-webm"]
    assert all(c["status"] == "Succeeded" for c in detail["children"])
    child = media.client.get(f"/v1/functions/transcode/invocations/{iid}-mp4").get_json()
    assert child["parent"]["invocationId"] == iid


def test_stopping_a_fan_out_parent_stops_its_children_and_their_ffmpeg(media: MediaEnv,
                                                                       long_clip: tuple[str, Path], submit: Any,
                                                                       wait_for_status: Any, process_gone: Any,
                                                                       unique: Any, ffmpeg_children: Any) -> None:
    key, _ = long_clip
    iid = submit(media.client, "transcode-fanout", {"bucket": media.bucket, "object": key,
                                                    "output_dir": unique("fanstop"), "dst_formats": ["mp4", "webm"],
                                                    "preset": "veryslow", "resolution": "640x480"}, unique("fanstop"))
    for fmt in ("mp4", "webm"):
        wait_for_status(media.services, "transcode", f"{iid}-{fmt}", {"Running"}, timeout_s=30)
    pids = ffmpeg_children(media.worker)
    assert media.client.post(f"/v1/functions/transcode-fanout/invocations/{iid}/stop").status_code == 202
    assert wait_for_status(media.services, "transcode-fanout", iid, {"Stopped"}, timeout_s=20).condition == "Stopped"
    for fmt in ("mp4", "webm"):
        child = wait_for_status(media.services, "transcode", f"{iid}-{fmt}", {"Stopped"}, timeout_s=20)
        assert child.condition == "Stopped"
    for pid in pids:
        assert process_gone(pid), f"ffmpeg {pid} outlived the stop"


def test_split_merge_keeps_every_frame_and_retries_a_failed_segment_alone(
        media: MediaEnv, long_clip: tuple[str, Path], tmp_path: Path,
        deploy: Any, submit: Any, wait_for_status: Any, unique: Any) -> None:
    key, local_source = long_clip
    deploy(media.client, "flaky-segment", "tests.integration.media.flaky:fail_once", timeout_s=120, max_retries=2)
    iid = submit(media.client, "transcode-split", {"bucket": media.bucket, "object": key, "output_dir": unique("split"),
                                                   "dst_format": "mp4", "segment_seconds": 30, "preset": "ultrafast",
                                                   "segment_function": "flaky-segment"},
                 unique("split"))
    inv = wait_for_status(media.services, "transcode-split", iid, {"Succeeded", "Failed", "Invalid"}, timeout_s=150)
    assert inv.status.value == "Succeeded", inv.error
    assert inv.attempts == 1
    result = json.loads(inv.result)
    segments = {s["invocationId"]: s for s in result["segments"]}
    assert len(segments) == 6  # 180 s in 30 s pieces
    assert {sid: s["attempts"] for sid, s in segments.items() if s["attempts"] != 1} == {f"{iid}-seg00002": 2}
    merged = media.fetch(result["outputs"][0]["key"], tmp_path / "merged.mp4")
    source, output = probe(local_source), probe(merged)
    assert count_frames(merged) == count_frames(local_source) == 1800
    assert abs(output.duration_s - source.duration_s) <= 1 / 10  # within one frame at 10 fps
    assert (output.video_codec, output.audio_codec) == ("h264", "aac")
    assert abs(_stream_duration(merged, "a") - _stream_duration(local_source, "a")) <= 0.1  # audio in sync
    assert media.storage.list(media.bucket, f"{result['outputs'][0]['key'].rsplit('/', 1)[0]}/_work/") == []


def _stream_duration(path: Path, kind: str) -> float:
    import subprocess

    done = subprocess.run(["ffprobe", "-v", "error", "-select_streams", f"{kind}:0", "-show_entries",
                           "stream=duration", "-of", "csv=p=0", str(path)], capture_output=True, check=True)
    return float(done.stdout.decode().strip())
