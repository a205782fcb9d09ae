"""The media flows through a real engine, a 2-slot worker, moto's S3 API and ffmpeg: fan-out to several formats,
split → foreach transcode segment → merge (frame-exact, a failed segment retried alone, a redrive re-running only the
failed segment), stop, and the deadlock the old waiting parents had."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import TYPE_CHECKING, Any

from taskservice.cli.media_commands import media_flow_definition
from tests.integration.media.flows import submissions
from workers.media.ffmpeg import count_frames, probe

if TYPE_CHECKING:
    from tests.integration.media.env import MediaEnv

ENDED = {"Succeeded", "Failed", "Stopped", "TimedOut"}


def _check_outputs(media: MediaEnv, formats: list[dict[str, Any]], tmp_path: Path, seconds: float) -> list[str]:
    """Every output exists with the size reported and probes to the clip's length; returns the formats seen."""
    seen = []
    for entry in formats:
        seen.append(entry["format"])
        outputs = entry["outputs"]
        files = outputs[1:] if entry["format"] == "m3u8" else outputs  # HLS: the playlist, then its segments
        if entry["format"] == "m3u8":
            assert outputs[0]["key"].endswith("/index.m3u8") and media.storage.stat(media.bucket, outputs[0]["key"])
        total = 0.0
        for output in files:
            local = media.fetch(output["key"], tmp_path / output["key"].replace("/", "_"))
            assert output["size"] == local.stat().st_size
            total += probe(local).duration_s
        assert abs(total - seconds) < 0.3, (entry["format"], total)
    return seen


def test_the_old_fan_out_name_starts_the_flow_and_three_formats_come_out(
        media: MediaEnv, short_clip: str, tmp_path: Path, submit: Any, wait_for_status: Any,
        wait_for_execution: Any, unique: Any) -> None:
    iid = submit(media.client, "transcode-fanout", {"bucket": media.bucket, "object": short_clip,
                                                    "output_dir": unique("fan"), "dst_formats": ["mp4", "webm", "m3u8"],
                                                    "preset": "ultrafast", "resolution": "160x120"}, unique("fan"))
    inv = wait_for_status(media.services, "transcode-fanout", iid, {"Succeeded", "Failed", "Invalid"}, timeout_s=30)
    assert inv.status.value == "Succeeded", inv.error
    started = json.loads(inv.result)
    assert started["flow"] == "media-fanout" and started["executionName"] == iid
    assert started["follow"] == f"/v1/flows/media-fanout/executions/{iid}"
    done = wait_for_execution(media.client, "media-fanout", iid, ENDED, timeout_s=120)
    assert done["status"] == "Succeeded", done["error"]
    assert _check_outputs(media, done["output"]["formats"], tmp_path, 3.0) == ["mp4", "webm", "m3u8"]
    steps = {s["path"]: s for s in done["steps"]}
    assert {steps[f"formats/{i}/transcode"]["invocation"]["function"] for i in range(3)} == {"transcode"}


def test_two_fan_outs_at_once_on_a_two_slot_worker_all_finish(media: MediaEnv, short_clip: str, tmp_path: Path,
                                                               submit: Any, start_execution: Any,
                                                               wait_for_execution: Any, unique: Any) -> None:
    """The deadlock of issue 12: two transcode-fanout parents used to hold both slots while their children waited.
    Now two old-name submissions and two flow executions at once, on two slots, all finish."""
    event = {"bucket": media.bucket, "object": short_clip, "dst_formats": ["mp4", "webm"], "preset": "ultrafast",
             "resolution": "160x120"}
    names = [submit(media.client, "transcode-fanout", {**event, "output_dir": unique("dl")}, unique("dl"))
             for _ in range(2)]
    names += [start_execution(media.client, "media-fanout", {**event, "output_dir": unique("dl")}) for _ in range(2)]
    for name in names:
        done = wait_for_execution(media.client, "media-fanout", name, ENDED, timeout_s=240)
        assert done["status"] == "Succeeded", done["error"]
        assert _check_outputs(media, done["output"]["formats"], tmp_path, 3.0) == ["mp4", "webm"]


def test_stopping_a_fan_out_execution_stops_its_transcodes_and_their_ffmpeg(
        media: MediaEnv, long_clip: tuple[str, Path], start_execution: Any, wait_for_execution: Any,
        wait_for_status: Any, process_gone: Any, unique: Any, ffmpeg_children: Any, eventually: Any) -> None:
    key, _ = long_clip
    name = start_execution(media.client, "media-fanout", {"bucket": media.bucket, "object": key,
                                                          "output_dir": unique("fanstop"),
                                                          "dst_formats": ["mp4", "webm"], "preset": "veryslow",
                                                          "resolution": "640x480"})

    def running_steps() -> list[dict[str, Any]]:
        steps = media.client.get(f"/v1/flows/media-fanout/executions/{name}").get_json()["steps"]
        return [s for s in steps if s["type"] == "task" and s["invocation"]]

    steps = eventually(running_steps, until=lambda s: len(s) == 2, timeout_s=30, what="both transcode steps")
    for step in steps:
        wait_for_status(media.services, "transcode", step["invocation"]["invocationId"], {"Running"}, timeout_s=30)
    pids = ffmpeg_children(media.worker)
    assert media.client.post(f"/v1/flows/media-fanout/executions/{name}/stop").status_code == 202
    assert wait_for_execution(media.client, "media-fanout", name, ENDED, timeout_s=30)["status"] == "Stopped"
    for step in steps:
        wait_for_status(media.services, "transcode", step["invocation"]["invocationId"], {"Stopped"}, timeout_s=20)
    for pid in pids:
        assert process_gone(pid), f"ffmpeg {pid} outlived the stop"


def _flaky_flow(media: MediaEnv, deploy: Any, deploy_flow: Any, unique: Any) -> str:
    """media-split-merge with its segment step on the flaky handler, as a flow of its own."""
    deploy(media.client, "flaky-segment", "tests.integration.media.flaky:fail_segment", timeout_s=120, max_retries=0)
    name = unique("flaky_split")
    deploy_flow(media.client, name, media_flow_definition("media-split-merge").replace(
        "function:media-transcode-segment", "function:flaky-segment"))
    return name


def test_split_merge_keeps_every_frame_and_retries_a_failed_segment_alone(
        media: MediaEnv, long_clip: tuple[str, Path], tmp_path: Path, deploy: Any, deploy_flow: Any,
        start_execution: Any, wait_for_execution: Any, unique: Any) -> None:
    key, local_source = long_clip
    flow = _flaky_flow(media, deploy, deploy_flow, unique)
    flag = tmp_path / "fail-segment-2"
    flag.touch()
    output_dir = unique("split")
    name = start_execution(media.client, flow, {"bucket": media.bucket, "object": key, "output_dir": output_dir,
                                                "dst_format": "mp4", "segment_seconds": 30, "preset": "ultrafast",
                                                "fail": {"index": 2, "flag": str(flag), "once": True}})
    done = wait_for_execution(media.client, flow, name, ENDED, timeout_s=240)
    assert done["status"] == "Succeeded", done["error"]
    assert not flag.exists(), "segment 2 failed once"
    counts = submissions(media.client, flow, name)
    segments = {p: n for p, n in counts.items() if p.startswith("transcode/")}
    assert len(segments) == 6  # 180 s in 30 s pieces
    assert {p: n for p, n in segments.items() if n != 1} == {"transcode/2/segment": 2}  # retried alone
    assert counts["plan"] == counts["merge"] == 1
    output = done["output"]["outputs"][0]
    assert output["key"] == f"{output_dir}/{name}.mp4" and output["frames"] == 1800
    merged = media.fetch(output["key"], tmp_path / "merged.mp4")
    source, result = probe(local_source), probe(merged)
    assert count_frames(merged) == count_frames(local_source) == 1800
    assert abs(result.duration_s - source.duration_s) <= 1 / 10  # within one frame at 10 fps
    assert (result.video_codec, result.audio_codec) == ("h264", "aac")
    assert abs(_stream_duration(merged, "a") - _stream_duration(local_source, "a")) <= 0.1  # audio in sync
    assert media.storage.list(media.bucket, f"{output_dir}/_work/") == []


def test_redrive_after_a_permanent_segment_failure_re_runs_only_that_segment(
        media: MediaEnv, short_clip: str, tmp_path: Path, deploy: Any, deploy_flow: Any, start_execution: Any,
        wait_for_execution: Any, unique: Any, eventually: Any) -> None:
    flow = _flaky_flow(media, deploy, deploy_flow, unique)
    flag = tmp_path / "fail-segment-1"
    flag.touch()
    name = start_execution(media.client, flow, {"bucket": media.bucket, "object": short_clip,
                                                "output_dir": unique("redrive"), "dst_format": "webm",
                                                "segment_seconds": 1, "preset": "ultrafast",
                                                "fail": {"index": 1, "flag": str(flag)}})
    failed = wait_for_execution(media.client, flow, name, ENDED, timeout_s=180)
    assert failed["status"] == "Failed" and "planned failure of segment 1" in (failed["error"] or "")
    before = submissions(media.client, flow, name)
    segments = sorted(p for p in before if p.startswith("transcode/"))
    assert len(segments) == 3  # 3 s, a keyframe every second
    assert before["transcode/1/segment"] == 3  # the step's retry: three attempts, all failed
    assert all(before[p] == 1 for p in segments if p != "transcode/1/segment") and "merge" not in before
    flag.unlink()
    assert media.client.post(f"/v1/flows/{flow}/executions/{name}/redrive").status_code == 202
    done = wait_for_execution(media.client, flow, name, {"Succeeded", "Failed"}, timeout_s=180)
    assert done["status"] == "Succeeded", done["error"]
    after = submissions(media.client, flow, name)
    assert after - before == {"transcode/1/segment": 1, "merge": 1}  # only the failed segment ran again
    assert done["output"]["outputs"][0]["frames"] == done["output"]["source"]["frames"] == 45


def _stream_duration(path: Path, kind: str) -> float:
    done = subprocess.run(["ffprobe", "-v", "error", "-select_streams", f"{kind}:0", "-show_entries",
                           "stream=duration", "-of", "csv=p=0", str(path)], capture_output=True, check=True)
    return float(done.stdout.decode().strip())
