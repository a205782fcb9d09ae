"""The media seed scenario, end to end (`make media-demo`): drop a video into a bucket → storage trigger → one
upload transcoded to several formats in parallel (the `media-fanout` flow) → the outputs listed.

Runs `taskservice dev` on a scratch data dir — the embedded default: SQLite, the filesystem broker and a local
directory as object storage, so no MinIO is needed — deploys the media built-ins, adds a storage trigger on bucket
`media` for `in/*.mov`, generates a short test video with ffmpeg and puts it with `taskservice objects put`, which
writes through the storage boundary and so fires the trigger exactly as a MinIO notification would.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import requests
from demo_dev import dev_spot, running_dev

REPO = Path(__file__).resolve().parent.parent


def step(text: str) -> None:
    print(f"\n\033[1m== {text}\033[0m", flush=True)


def cli(env: dict[str, str], *args: str) -> str:
    print("$ taskservice " + " ".join(args), flush=True)
    out = subprocess.run([sys.executable, "-m", "taskservice.cli", *args], env=env, cwd=REPO, text=True,
                         capture_output=True)
    print((out.stdout + out.stderr).rstrip(), flush=True)
    if out.returncode != 0:
        raise SystemExit(f"command failed with status {out.returncode}")
    return out.stdout


def main() -> None:
    spot = dev_spot("media-demo-")
    data_dir, base, env = spot.data_dir, spot.base, spot.env
    step(f"taskservice dev on {base} (embedded default; objects in {data_dir / 'objects'})")
    with running_dev(spot, "-c", "2"):  # two slots are plenty: no function waits for another
        run(env, data_dir, base)


def run(env: dict[str, str], data_dir: Path, base: str) -> None:
    step("deploy the media functions and a storage trigger: uploads to media/in/*.mov run media-upload")
    cli(env, "functions", "deploy-media")
    cli(env, "triggers", "put", "new-videos", "--kind", "storage", "--function", "media-upload", "--bucket", "media",
        "--event", "s3:ObjectCreated:*", "--prefix", "in/", "--suffix", ".mov")
    step("make a 4-second test video with ffmpeg")
    video = data_dir / "talk.mov"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-y", "-f", "lavfi", "-i", "testsrc2=size=320x240:rate=25",
                    "-f", "lavfi", "-i", "sine=frequency=440:sample_rate=44100", "-t", "4", "-c:v", "libx264",
                    "-pix_fmt", "yuv420p", "-c:a", "aac", str(video)], check=True)
    step("drop it into the bucket (through the storage boundary: the trigger fires, no MinIO needed)")
    cli(env, "objects", "put", "media", "in/talk.mov", str(video), "--content-type", "video/quicktime")
    step("the storage trigger's invocation starts a media-fanout flow execution: one transcode step per format")
    deadline = time.monotonic() + 600
    while True:
        page = json.loads(cli(env, "tasks", "list", "--function", "media-upload", "--json"))
        items = page["items"]
        if items and items[0]["status"] in ("Succeeded", "Failed", "Invalid", "Stopped", "Expired"):
            break
        if time.monotonic() > deadline:
            raise SystemExit("the upload was not handled within 10 minutes")
        time.sleep(1)
    iid = items[0]["invocationId"]
    shown = json.loads(cli(env, "tasks", "show", "media-upload", iid, "--json"))
    for started in (shown.get("result") or {}).get("executions", []):
        print(f"  follow: GET {base}{started['follow']}")
        while True:
            execution = requests.get(f"{base}{started['follow']}", timeout=10).json()
            if execution["status"] not in ("Running", "Stopping"):
                break
            if time.monotonic() > deadline:
                raise SystemExit("the transcode did not finish within 10 minutes")
            time.sleep(2)
        step(f"execution {execution['executionName']}: {execution['status']}; the outputs")
        for entry in (execution.get("output") or {}).get("formats", []):
            for out in entry["outputs"]:
                print(f"  {entry['format']:<5} {out['key']} ({out['size']} bytes, {out['duration']} s)")
    cli(env, "objects", "ls", "media", "--prefix", "out/")
    cli(env, "triggers", "show", "new-videos")


if __name__ == "__main__":
    main()
