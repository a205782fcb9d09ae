"""The ffmpeg boundary: the only module that builds or runs ffmpeg and ffprobe command lines (design §3, rule 6).

Command lines are built with ffmpeg-python (`ffmpeg.input(...).output(...).compile()`, probes through
`ffmpeg.probe`), which yields argv lists; it never runs anything through a shell, and neither does this module.
ffmpeg-python writes an input's options before its `-i` (`-f` first, the rest sorted by name) and an output's
before its file name, and global options at the end, where ffmpeg still takes them as global.

Safety rules, applied to every run:
- argv lists only, never a shell; every path is one the server generated inside a per-attempt work directory;
- `-protocol_whitelist file` on every input and output (nothing reaches the network or another protocol);
- `-format_whitelist` on every input (real media containers; for the merge's own segment list, concat and the
  Matroska segments it names) and the demuxer the probe found is forced with `-f`: HLS playlists, concat lists and
  other text formats can never be opened, even by a file that lies about its type;
- output size bounded with `-fs` and checked again afterwards (HLS segments by watching the output directory).
Progress comes from `-progress pipe:1` (out_time_us against the probed duration).
"""
from __future__ import annotations

import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import ffmpeg

from workers.media import MediaFailed, OutputTooLarge, UnsafeInput
from workers.media.formats import AUDIO_ENCODERS, VIDEO_ENCODERS, EncodeOptions

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,wav,mp3,flac,asf,aac"
#: The merge's concat list (written here) and the Matroska segments it names: nothing else may be opened through it.
CONCAT_DEMUXERS = "concat,matroska"
#: Global options of every ffmpeg run: no terminal interaction, only errors on stderr, progress as key=value lines.
GLOBAL_ARGS = ("-nostdin", "-hide_banner", "-v", "error", "-progress", "pipe:1", "-nostats")
_FAST_PRESETS = ("ultrafast", "superfast", "veryfast", "faster")
_SNIFF = ((b"#EXTM3U", "an HLS playlist"), (b"ffconcat", "a concat list"), (b"file ", "a concat list"),
          (b"file'", "a concat list"), (b"<?xml", "an XML document (DASH manifests are playlists)"))

Progress = Callable[[float], None]


@dataclass(frozen=True)
class Probe:
    path: Path
    demuxer: str
    duration_s: float
    size: int
    video_codec: str | None
    audio_codec: str | None
    width: int | None
    height: int | None

    def summary(self) -> dict[str, Any]:
        return {"duration": round(self.duration_s, 3), "size": self.size, "format": self.demuxer,
                "video_codec": self.video_codec, "audio_codec": self.audio_codec,
                "resolution": f"{self.width}x{self.height}" if self.width else None}


def probe(path: Path) -> Probe:
    """Probe an input (or output); refuse anything that is not a real audio/video container."""
    with open(path, "rb") as fh:
        head = fh.read(64).lstrip()
    for prefix, what in _SNIFF:
        if head.startswith(prefix):
            raise UnsafeInput(f"the input is {what}: playlists and concat lists are refused, send a media file")
    try:
        info = _ffprobe(path)
    except ffmpeg.Error as exc:
        reason = _stderr(exc).splitlines()[-1:] or ["unknown error"]
        raise UnsafeInput(f"the input is not a supported media container ({reason[0][-200:]}); accepted: "
                          f"{DEMUXERS}") from None
    streams = info.get("streams", [])
    video = next((s for s in streams if s.get("codec_type") == "video"
                  and not s.get("disposition", {}).get("attached_pic")), None)
    audio = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if video is None and audio is None:
        raise UnsafeInput("the input has neither a video nor an audio stream")
    fmt = info.get("format", {})
    duration = float(fmt.get("duration") or 0)
    if duration <= 0:
        raise UnsafeInput("the input has no duration: not a playable media file")
    return Probe(path=path, demuxer=str(fmt["format_name"]).split(",")[0], duration_s=duration,
                 size=int(fmt.get("size") or path.stat().st_size),
                 video_codec=None if video is None else video.get("codec_name"),
                 audio_codec=None if audio is None else audio.get("codec_name"),
                 width=None if video is None else video.get("width"),
                 height=None if video is None else video.get("height"))


def count_frames(path: Path) -> int:
    """Video frames (packets) in a file, counted by reading it through."""
    try:
        info = _ffprobe(path, select_streams="v:0", count_packets=None)
    except ffmpeg.Error as exc:
        raise MediaFailed(f"ffprobe could not count frames: {_stderr(exc)[-300:]}") from None
    return int(info["streams"][0]["nb_read_packets"])


def _ffprobe(path: Path, **options: Any) -> dict[str, Any]:
    """ffprobe's JSON for a file, under the same whitelists as every ffmpeg input. No timeout of its own (ffmpeg-
    python 0.2 has none): a probe that hangs ends with the attempt, whose timeout kills the handler's process
    group, ffprobe included."""
    info: dict[str, Any] = ffmpeg.probe(str(path), cmd=FFPROBE, v="error", protocol_whitelist="file",
                                        format_whitelist=DEMUXERS, **options)
    return info


def _stderr(exc: Any) -> str:
    return (exc.stderr or b"").decode(errors="replace").strip()


def _input(src: Probe) -> Any:
    """A probed file as an input: its demuxer forced, only media containers and the file protocol allowed."""
    return ffmpeg.input(str(src.path), f=src.demuxer, format_whitelist=DEMUXERS, protocol_whitelist="file")


def _output(streams: list[Any], dst: Path, *, muxer: str, max_bytes: int | None, **options: Any) -> Any:
    """An output written only through the file protocol, bounded by `-fs` when `max_bytes` is given (a stream
    copy into segments is bounded by its input instead). ffmpeg-python writes a `-map` per stream given."""
    bound = {} if max_bytes is None else {"fs": max_bytes}
    return ffmpeg.output(*streams, str(dst), f=muxer, protocol_whitelist="file", **bound, **options)


def _container_options(muxer_name: str) -> dict[str, Any]:
    return {"movflags": "+faststart"} if muxer_name in ("mp4", "mov") else {}


def _video_options(opts: EncodeOptions, *, watermark_file: Path | None) -> dict[str, Any]:
    assert opts.video_codec is not None
    encoder = VIDEO_ENCODERS[opts.video_codec]
    filters = []
    if opts.resolution:
        filters.append(f"scale={opts.resolution[0]}:{opts.resolution[1]}")
    if watermark_file is not None:  # the text travels in a file: nothing in it can alter the filter graph
        filters.append(f"drawtext=textfile={watermark_file.name}:expansion=none:fontcolor=white:fontsize=h/16"
                       ":x=10:y=h-th-10:box=1:boxcolor=black@0.4:boxborderw=4")
    options: dict[str, Any] = {"c:v": encoder, "pix_fmt": "yuv420p"}
    if filters:
        options["vf"] = ",".join(filters)
    if encoder == "libx264":
        options["preset"] = opts.preset
    elif encoder.startswith("libvpx"):
        options |= {"deadline": "realtime", "cpu-used": "8" if opts.preset in _FAST_PRESETS else "4"}
        if encoder == "libvpx-vp9":
            options["row-mt"] = "1"
    if opts.bitrate:
        options["video_bitrate"] = opts.bitrate  # -b:v
    return options


def _audio_options(opts: EncodeOptions) -> dict[str, Any]:
    return {"c:a": AUDIO_ENCODERS[opts.audio_codec]}


def transcode(src: Probe, dst: Path, opts: EncodeOptions, *, max_bytes: int, on_progress: Progress) -> list[Path]:
    """Encode `src` into `dst` (for HLS: `dst` is the playlist, segments land beside it); returns the files made."""
    workdir = dst.parent
    watermark = None
    if opts.watermark_text:
        watermark = workdir / "watermark.txt"
        watermark.write_text(opts.watermark_text, encoding="utf-8")
    source = _input(src)
    streams: list[Any] = []
    options: dict[str, Any] = {}
    if opts.format.videos and src.video_codec:
        streams.append(source["v:0"])
        options |= _video_options(opts, watermark_file=watermark)
    else:
        options["vn"] = None
    if src.audio_codec:
        streams.append(source["a:0?"])
        options |= _audio_options(opts)
    else:
        options["an"] = None
    if opts.format.name == "m3u8":
        options |= {"hls_time": 6, "hls_playlist_type": "vod", "hls_segment_type": "mpegts",
                    "hls_segment_filename": str(workdir / "seg_%05d.ts")}
    else:
        options |= _container_options(opts.format.name)
    # Neither stream wanted: the bare input gives no `-map` at all, and ffmpeg refuses the empty output itself.
    output = _output(streams or [source], dst, muxer=opts.format.muxer, max_bytes=max_bytes, **options)
    _run(output, cwd=workdir, duration_s=src.duration_s, on_progress=on_progress, max_bytes=max_bytes,
         watch=workdir if opts.format.name == "m3u8" else None)
    outputs = [dst] + (sorted(workdir.glob("seg_*.ts")) if opts.format.name == "m3u8" else [])
    _check_size(outputs, max_bytes)
    return outputs


def split_video(src: Probe, out_dir: Path, segment_s: float, on_progress: Progress) -> list[Path]:
    """Cut the video stream at keyframes into ~segment_s pieces without re-encoding (audio is handled at merge)."""
    output = _output([_input(src)["v:0"]], out_dir / "part_%05d.mkv", muxer="segment", max_bytes=None, c="copy",
                     segment_time=f"{segment_s:g}", reset_timestamps=1, segment_format="matroska")
    _run(output, cwd=out_dir, duration_s=src.duration_s, on_progress=on_progress)
    return sorted(out_dir.glob("part_*.mkv"))


def encode_segment(src: Probe, dst: Path, opts: EncodeOptions, *, max_bytes: int, on_progress: Progress) -> None:
    """Encode one video-only segment, keeping every frame and its timestamp (no frame dropped or duplicated)."""
    watermark = None
    if opts.watermark_text:
        watermark = dst.parent / "watermark.txt"
        watermark.write_text(opts.watermark_text, encoding="utf-8")
    output = _output([_input(src)["v:0"]], dst, muxer="matroska", max_bytes=max_bytes,
                     **_video_options(opts, watermark_file=watermark), fps_mode="passthrough", an=None)
    _run(output, cwd=dst.parent, duration_s=src.duration_s, on_progress=on_progress)
    _check_size([dst], max_bytes)


def merge(segments: list[Path], source: Probe, dst: Path, opts: EncodeOptions, *, max_bytes: int,
          on_progress: Progress) -> None:
    """Join encoded segments with the concat demuxer (no re-encoding) and add the source's audio, encoded once
    over the whole length, so it stays in sync and has no gaps at the joins."""
    listing = dst.parent / "segments.txt"
    if any(s.parent != listing.parent for s in segments):
        raise ValueError("segments must sit beside the merged output")
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file {s.name}\n" for s in segments))
    joined = ffmpeg.input(str(listing), f="concat", safe=1, format_whitelist=CONCAT_DEMUXERS,
                          protocol_whitelist="file")
    streams = [joined["v:0"]]
    options: dict[str, Any] = {"c:v": "copy", **_container_options(opts.format.name)}
    if source.audio_codec:
        streams.append(_input(source)["a:0"])
        options |= _audio_options(opts)
    else:
        options["an"] = None
    output = _output(streams, dst, muxer=opts.format.muxer, max_bytes=max_bytes, **options)
    _run(output, cwd=dst.parent, duration_s=source.duration_s, on_progress=on_progress)
    _check_size([dst], max_bytes)


def _check_size(paths: list[Path], max_bytes: int) -> None:
    total = sum(p.stat().st_size for p in paths)
    if total >= max_bytes:
        raise OutputTooLarge(f"the output reached the size bound of {max_bytes} bytes and was discarded")


def _run(output: Any, *, cwd: Path, duration_s: float, on_progress: Progress, max_bytes: int | None = None,
         watch: Path | None = None) -> None:
    """Compile an ffmpeg-python output into argv with the global options every run has, run it (its stdout is the
    `-progress` stream), report progress, keep stderr for the error message."""
    argv: list[str] = output.global_args(*GLOBAL_ARGS).overwrite_output().compile(cmd=FFMPEG)
    log_path = cwd / f"ffmpeg-{len(list(cwd.glob('ffmpeg-*.log')))}.log"
    with open(log_path, "wb") as log, subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL,
                                                       stdout=subprocess.PIPE, stderr=log) as proc:
        assert proc.stdout is not None
        for raw in proc.stdout:
            key, _, value = raw.decode(errors="replace").strip().partition("=")
            if key == "out_time_us" and value.isdigit() and duration_s > 0:
                on_progress(min(1.0, int(value) / 1e6 / duration_s))
                if watch is not None and max_bytes is not None and _dir_size(watch) >= max_bytes:
                    proc.kill()
                    raise OutputTooLarge(f"the output reached the size bound of {max_bytes} bytes and was discarded")
        code = proc.wait()
    if code != 0:
        tail = log_path.read_text(errors="replace").strip()[-600:]
        raise MediaFailed(f"{Path(argv[0]).name} exited with {code}: {tail or 'no error output'}")
    on_progress(1.0)


def _dir_size(path: Path) -> int:
    return sum(p.stat().st_size for p in path.iterdir() if p.is_file() and not p.name.startswith("input."))
