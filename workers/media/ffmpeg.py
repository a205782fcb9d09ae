"""The ffmpeg boundary: the only module that builds or runs ffmpeg and ffprobe command lines (design §3, rule 6).

Safety rules, applied to every run:
- argv lists only, never a shell; every path is one the server generated inside a per-attempt work directory;
- `-protocol_whitelist file` on every input and output (nothing reaches the network or another protocol);
- `-format_whitelist` of real media containers on every input, and the demuxer the probe found is forced with `-f`:
  HLS playlists, concat lists and other text formats can never be opened, even by a file that lies about its type;
- output size bounded with `-fs` and checked again afterwards (HLS segments by watching the output directory).
Progress comes from `-progress pipe:1` (out_time_us against the probed duration).
"""
from __future__ import annotations

import json
import subprocess
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workers.media import MediaFailed, OutputTooLarge, UnsafeInput
from workers.media.formats import AUDIO_ENCODERS, VIDEO_ENCODERS, EncodeOptions

FFMPEG = "ffmpeg"
FFPROBE = "ffprobe"
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,ogg,wav,mp3,flac,asf,aac"
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
    argv = [FFPROBE, "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", DEMUXERS,
            "-print_format", "json", "-show_format", "-show_streams", str(path)]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=120)
    if done.returncode != 0:
        reason = done.stderr.decode(errors="replace").strip().splitlines()[-1:] or ["unknown error"]
        raise UnsafeInput(f"the input is not a supported media container ({reason[0][-200:]}); accepted: "
                          f"{DEMUXERS}")
    info = json.loads(done.stdout)
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
    argv = [FFPROBE, "-v", "error", "-protocol_whitelist", "file", "-format_whitelist", DEMUXERS, "-select_streams",
            "v:0", "-count_packets", "-show_entries", "stream=nb_read_packets", "-of", "csv=p=0", str(path)]
    done = subprocess.run(argv, stdin=subprocess.DEVNULL, capture_output=True, timeout=600, check=False)
    if done.returncode != 0:
        raise MediaFailed(f"ffprobe could not count frames: {done.stderr.decode(errors='replace')[-300:]}")
    return int(done.stdout.decode().strip().split(",")[0])


def _input(src: Probe) -> list[str]:
    return ["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS, "-f", src.demuxer, "-i", str(src.path)]


def _video_args(opts: EncodeOptions, *, watermark_file: Path | None) -> list[str]:
    assert opts.video_codec is not None
    encoder = VIDEO_ENCODERS[opts.video_codec]
    filters = []
    if opts.resolution:
        filters.append(f"scale={opts.resolution[0]}:{opts.resolution[1]}")
    if watermark_file is not None:  # the text travels in a file: nothing in it can alter the filter graph
        filters.append(f"drawtext=textfile={watermark_file.name}:expansion=none:fontcolor=white:fontsize=h/16"
                       ":x=10:y=h-th-10:box=1:boxcolor=black@0.4:boxborderw=4")
    args = ["-c:v", encoder, "-pix_fmt", "yuv420p"]
    if filters:
        args += ["-vf", ",".join(filters)]
    if encoder == "libx264":
        args += ["-preset", opts.preset]
    elif encoder.startswith("libvpx"):
        args += ["-deadline", "realtime", "-cpu-used", "8" if opts.preset in _FAST_PRESETS else "4"]
        args += ["-row-mt", "1"] if encoder == "libvpx-vp9" else []
    if opts.bitrate:
        args += ["-b:v", opts.bitrate]
    return args


def _audio_args(opts: EncodeOptions) -> list[str]:
    return ["-c:a", AUDIO_ENCODERS[opts.audio_codec]]


def transcode(src: Probe, dst: Path, opts: EncodeOptions, *, max_bytes: int, on_progress: Progress) -> list[Path]:
    """Encode `src` into `dst` (for HLS: `dst` is the playlist, segments land beside it); returns the files made."""
    workdir = dst.parent
    watermark = None
    if opts.watermark_text:
        watermark = workdir / "watermark.txt"
        watermark.write_text(opts.watermark_text, encoding="utf-8")
    argv = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", *_input(src)]
    if opts.format.videos and src.video_codec:
        argv += ["-map", "0:v:0", *_video_args(opts, watermark_file=watermark)]
    else:
        argv += ["-vn"]
    argv += ["-map", "0:a:0?", *_audio_args(opts)] if src.audio_codec else ["-an"]
    if opts.format.name == "m3u8":
        argv += ["-f", "hls", "-hls_time", "6", "-hls_playlist_type", "vod", "-hls_segment_type", "mpegts",
                 "-hls_segment_filename", str(workdir / "seg_%05d.ts")]
    else:
        argv += ["-f", opts.format.muxer] + (["-movflags", "+faststart"] if opts.format.name in ("mp4", "mov") else [])
    argv += ["-fs", str(max_bytes), "-protocol_whitelist", "file", str(dst)]
    _run(argv, cwd=workdir, duration_s=src.duration_s, on_progress=on_progress, max_bytes=max_bytes,
         watch=workdir if opts.format.name == "m3u8" else None)
    outputs = [dst] + (sorted(workdir.glob("seg_*.ts")) if opts.format.name == "m3u8" else [])
    _check_size(outputs, max_bytes)
    return outputs


def split_video(src: Probe, out_dir: Path, segment_s: float, on_progress: Progress) -> list[Path]:
    """Cut the video stream at keyframes into ~segment_s pieces without re-encoding (audio is handled at merge)."""
    argv = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", *_input(src), "-map", "0:v:0", "-c", "copy",
            "-f", "segment", "-segment_time", f"{segment_s:g}", "-reset_timestamps", "1",
            "-segment_format", "matroska", "-protocol_whitelist", "file", str(out_dir / "part_%05d.mkv")]
    _run(argv, cwd=out_dir, duration_s=src.duration_s, on_progress=on_progress)
    return sorted(out_dir.glob("part_*.mkv"))


def encode_segment(src: Probe, dst: Path, opts: EncodeOptions, *, max_bytes: int, on_progress: Progress) -> None:
    """Encode one video-only segment, keeping every frame and its timestamp (no frame dropped or duplicated)."""
    watermark = None
    if opts.watermark_text:
        watermark = dst.parent / "watermark.txt"
        watermark.write_text(opts.watermark_text, encoding="utf-8")
    argv = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", *_input(src), "-map", "0:v:0",
            *_video_args(opts, watermark_file=watermark), "-fps_mode", "passthrough", "-an", "-f", "matroska",
            "-fs", str(max_bytes), "-protocol_whitelist", "file", str(dst)]
    _run(argv, cwd=dst.parent, duration_s=src.duration_s, on_progress=on_progress)
    _check_size([dst], max_bytes)


def merge(segments: list[Path], source: Probe, dst: Path, opts: EncodeOptions, *, max_bytes: int,
          on_progress: Progress) -> None:
    """Join encoded segments with the concat demuxer (no re-encoding) and add the source's audio, encoded once
    over the whole length, so it stays in sync and has no gaps at the joins."""
    listing = dst.parent / "segments.txt"
    if any(s.parent != listing.parent for s in segments):
        raise ValueError("segments must sit beside the merged output")
    listing.write_text("ffconcat version 1.0\n" + "".join(f"file {s.name}\n" for s in segments))
    argv = [FFMPEG, "-nostdin", "-hide_banner", "-v", "error", "-y", "-protocol_whitelist", "file",
            "-f", "concat", "-safe", "1", "-i", str(listing), *_input(source), "-map", "0:v:0", "-c:v", "copy"]
    argv += ["-map", "1:a:0", *_audio_args(opts)] if source.audio_codec else ["-an"]
    argv += ["-f", opts.format.muxer] + (["-movflags", "+faststart"] if opts.format.name in ("mp4", "mov") else [])
    argv += ["-fs", str(max_bytes), "-protocol_whitelist", "file", str(dst)]
    _run(argv, cwd=dst.parent, duration_s=source.duration_s, on_progress=on_progress)
    _check_size([dst], max_bytes)


def _check_size(paths: list[Path], max_bytes: int) -> None:
    total = sum(p.stat().st_size for p in paths)
    if total >= max_bytes:
        raise OutputTooLarge(f"the output reached the size bound of {max_bytes} bytes and was discarded")


def _run(argv: list[str], *, cwd: Path, duration_s: float, on_progress: Progress, max_bytes: int | None = None,
         watch: Path | None = None) -> None:
    """Run ffmpeg with `-progress pipe:1`, report progress, keep stderr for the error message."""
    argv = [argv[0], "-progress", "pipe:1", "-nostats", *argv[1:]]
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
