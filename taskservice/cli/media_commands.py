"""`taskservice functions deploy-media`: register the built-in media functions in one command."""
from __future__ import annotations

import click

from taskservice.cli.output import api_errors, client_of

# name → (handler, timeout_s, max_retries, what it does). Parents wait for their children, so their timeout covers
# the children's; children retry on their own. Names are the defaults the parents submit to.
MEDIA_FUNCTIONS: dict[str, tuple[str, int, int, str]] = {
    "transcode": ("workers.handlers.transcode:handler", 3600, 2,
                  "transcode one object to mp4/mov/flv/avi/webm/m3u8/mp3"),
    "media-upload": ("workers.handlers.on_upload:handler", 4 * 3600, 0,
                     "storage-trigger entry: an uploaded video to mp4, webm and m3u8 (transcode-fanout)"),
    "transcode-fanout": ("workers.handlers.fanout:handler", 4 * 3600, 0,
                         "one child transcode per format in dst_formats"),
    "transcode-split": ("workers.handlers.split_merge:handler", 4 * 3600, 0,
                        "split at keyframes, transcode segments in parallel, merge"),
    "transcode-segment": ("workers.handlers.split_merge:segment_handler", 3600, 3,
                          "one segment of transcode-split"),
    "range-copy": ("workers.handlers.range_copy:handler", 4 * 3600, 0,
                   "copy a large object by byte ranges in parallel, compose, verify SHA-256"),
    "range-copy-shard": ("workers.handlers.range_copy:shard_handler", 3600, 3, "one byte range of range-copy"),
}


@click.command("deploy-media")
@click.option("--prefix", default="", help="Prefix for the function names (children are then named in events: "
                                           "transcode_function, segment_function, shard_function).")
@click.pass_context
def deploy_media(ctx: click.Context, prefix: str) -> None:
    """Register (or update) the built-in media functions: transcode, fan-out, split-merge, range copy.

    \b
    A waiting parent (fan-out, split, range copy) holds one worker slot while its children run: give the workers
    more slots than parents you run at once (`taskservice worker -c N`).
    """
    client = client_of(ctx)
    with api_errors():
        for name, (handler, timeout_s, retries, description) in MEDIA_FUNCTIONS.items():
            client.put_function(f"{prefix}{name}", {"handler": handler, "timeout_s": timeout_s,
                                                    "max_retries": retries, "description": description})
            click.echo(f"deployed {prefix}{name:<18} {handler}")
