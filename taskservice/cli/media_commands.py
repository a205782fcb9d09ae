"""`taskservice functions deploy-media`: register the built-in media functions and the flows built on them.

The flows (`media-fanout`, `media-split-merge`, `media-range-copy`) ship as YAML beside this module (package data,
so an installed wheel deploys them too) and are deployed through the API like any user's flow (PUT /v1/flows/…).
"""
from __future__ import annotations

from importlib import resources

import click

from taskservice.cli.output import api_errors, client_of

# name → (handler, timeout_s, max_retries, what it does). Step functions retry through their flow's `retry` (the
# function's max_retries does not stack on it); max_retries applies when one is invoked on its own.
MEDIA_FUNCTIONS: dict[str, tuple[str, int, int, str]] = {
    "transcode": ("workers.handlers.transcode:handler", 3600, 2,
                  "transcode one object to mp4/mov/flv/avi/webm/m3u8/mp3"),
    "media-split-plan": ("workers.handlers.split_merge:plan_handler", 3600, 0,
                         "media-split-merge step: cut the video at keyframes, upload the pieces"),
    "media-transcode-segment": ("workers.handlers.split_merge:segment_handler", 3600, 0,
                                "media-split-merge step: transcode one piece"),
    "media-merge": ("workers.handlers.split_merge:merge_handler", 3600, 0,
                    "media-split-merge step: concat the pieces frame-exact, add the audio, verify the frame count"),
    "range-copy-plan": ("workers.handlers.range_copy:plan_handler", 600, 0, "media-range-copy step: the byte ranges"),
    "range-copy-shard": ("workers.handlers.range_copy:shard_handler", 3600, 3, "copy one byte range into a part"),
    "range-copy-compose": ("workers.handlers.range_copy:compose_handler", 3600, 0,
                           "media-range-copy step: compose the parts, verify SHA-256"),
    "transcode-segment": ("workers.handlers.split_merge:segment_handler", 3600, 3,
                          "one segment, fields top-level (kept for direct callers)"),
    # The old waiting parents: each now starts its flow and returns the execution at once.
    "media-upload": ("workers.handlers.on_upload:handler", 300, 2,
                     "storage-trigger entry: an uploaded video to mp4, webm and m3u8 (starts media-fanout)"),
    "transcode-fanout": ("workers.handlers.fanout:handler", 300, 2, "starts the media-fanout flow"),
    "transcode-split": ("workers.handlers.split_merge:handler", 300, 2, "starts the media-split-merge flow"),
    "range-copy": ("workers.handlers.range_copy:handler", 300, 2, "starts the media-range-copy flow"),
}
MEDIA_FLOWS: dict[str, str] = {
    "media-fanout": "one upload to several formats in parallel (a transcode step per format)",
    "media-split-merge": "split at keyframes → transcode segments in parallel, each retried alone → merge",
    "media-range-copy": "copy a large object by byte ranges in parallel → compose → verify SHA-256",
}


def media_flow_definition(name: str, prefix: str = "") -> str:
    """The YAML of a media flow, its functions named with `prefix` (as deploy-media names them)."""
    text = resources.files("taskservice.cli").joinpath("media_flows", f"{name}.yaml").read_text(encoding="utf-8")
    return text.replace("resourceArn: function:", f"resourceArn: function:{prefix}")


@click.command("deploy-media")
@click.option("--prefix", default="", help="Prefix for the function and flow names (the flows call the prefixed "
                                           "functions; the old parents start the prefixed flows).")
@click.pass_context
def deploy_media(ctx: click.Context, prefix: str) -> None:
    """Register (or update) the built-in media functions and the flows that orchestrate them: media-fanout,
    media-split-merge, media-range-copy.

    \b
    No function waits for another in a worker slot: the flow engine (`taskservice engine`, started by
    `taskservice dev`) runs the steps. transcode-fanout, transcode-split, range-copy and media-upload start their
    flow and return the execution to follow: GET /v1/flows/<flow>/executions/<executionName>.
    """
    client = client_of(ctx)
    with api_errors():
        for name, (handler, timeout_s, retries, description) in MEDIA_FUNCTIONS.items():
            client.put_function(f"{prefix}{name}", {"handler": handler, "timeout_s": timeout_s,
                                                    "max_retries": retries, "description": description})
            click.echo(f"deployed {prefix}{name:<24} {handler}")
        for name, description in MEDIA_FLOWS.items():
            client.put_flow(f"{prefix}{name}", media_flow_definition(name, prefix), description=description)
            click.echo(f"deployed flow {prefix}{name:<19} (taskservice flows show {prefix}{name})")
