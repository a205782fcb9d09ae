"""Output formats and the codecs each accepts, and validation of the optional encoding fields of an event.

Codec names in events are the short names users know (h264, vp9, aac, mp3 …); they map to one fixed encoder each,
so an event can never name an arbitrary ffmpeg encoder or option.
"""
from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from workers.media import BadEvent

VIDEO_ENCODERS = {"h264": "libx264", "vp9": "libvpx-vp9", "vp8": "libvpx", "mpeg4": "mpeg4", "flv1": "flv"}
AUDIO_ENCODERS = {"aac": "aac", "mp3": "libmp3lame", "opus": "libopus"}
X264_PRESETS = ("ultrafast", "superfast", "veryfast", "faster", "fast", "medium", "slow", "slower", "veryslow")
_RESOLUTION = re.compile(r"^(\d{2,4})x(\d{2,4})$")
_BITRATE = re.compile(r"^\d{1,6}(\.\d{1,3})?[kKmM]?$")


@dataclass(frozen=True)
class Format:
    name: str
    ext: str
    muxer: str
    videos: tuple[str, ...]  # allowed video codecs, default first; empty = audio only
    audios: tuple[str, ...]  # allowed audio codecs, default first
    content_type: str


FORMATS = {f.name: f for f in (
    Format("mp4", "mp4", "mp4", ("h264", "mpeg4"), ("aac", "mp3"), "video/mp4"),
    Format("mov", "mov", "mov", ("h264", "mpeg4"), ("aac", "mp3"), "video/quicktime"),
    Format("flv", "flv", "flv", ("h264", "flv1"), ("aac", "mp3"), "video/x-flv"),
    Format("avi", "avi", "avi", ("mpeg4", "h264"), ("mp3", "aac"), "video/x-msvideo"),
    Format("webm", "webm", "webm", ("vp9", "vp8"), ("opus",), "video/webm"),
    Format("m3u8", "m3u8", "hls", ("h264",), ("aac", "mp3"), "application/vnd.apple.mpegurl"),
    Format("mp3", "mp3", "mp3", (), ("mp3",), "audio/mpeg"),
)}
SEGMENT_FORMATS = ("mp4", "mov", "flv", "avi", "webm")  # what split → merge can produce (one file, video + audio)


@dataclass(frozen=True)
class EncodeOptions:
    """Validated encoding choices; the ffmpeg module turns them into arguments."""

    format: Format
    video_codec: str | None
    audio_codec: str
    resolution: tuple[int, int] | None = None
    bitrate: str | None = None
    watermark_text: str | None = None
    preset: str = "veryfast"

    def public(self) -> dict[str, Any]:
        """The fields as an event carries them, to forward to a child invocation."""
        out: dict[str, Any] = {"dst_format": self.format.name, "audio_codec": self.audio_codec, "preset": self.preset}
        if self.video_codec:
            out["video_codec"] = self.video_codec
        if self.resolution:
            out["resolution"] = f"{self.resolution[0]}x{self.resolution[1]}"
        for name in ("bitrate", "watermark_text"):
            if getattr(self, name) is not None:
                out[name] = getattr(self, name)
        return out


def parse_format(name: Any, allowed: tuple[str, ...] = tuple(FORMATS)) -> Format:
    if not isinstance(name, str) or name.lower() not in allowed:
        raise BadEvent(f"dst_format must be one of {', '.join(allowed)}; got {name!r}")
    return FORMATS[name.lower()]


def parse_options(event: dict[str, Any], fmt: Format) -> EncodeOptions:
    """Validate the optional encoding fields of a transcode event against the chosen format."""
    video = _codec(event.get("video_codec"), fmt.videos, "video_codec", fmt) if fmt.videos else None
    audio = _codec(event.get("audio_codec"), fmt.audios, "audio_codec", fmt)
    resolution = None
    if event.get("resolution") is not None:
        match = _RESOLUTION.fullmatch(str(event["resolution"]))
        if not match or any(int(v) < 16 or int(v) > 7680 or int(v) % 2 for v in match.groups()):
            raise BadEvent(f"resolution must be WIDTHxHEIGHT with even values 16..7680; got {event['resolution']!r}")
        resolution = (int(match.group(1)), int(match.group(2)))
    bitrate = event.get("bitrate")
    if bitrate is not None and not _BITRATE.fullmatch(str(bitrate)):
        raise BadEvent(f"bitrate must look like 800k or 2M; got {bitrate!r}")
    watermark = event.get("watermark_text")
    if watermark is not None and (not isinstance(watermark, str) or not 0 < len(watermark) <= 200
                                  or any(ord(c) < 32 for c in watermark)):
        raise BadEvent("watermark_text must be 1..200 printable characters")
    if watermark and not fmt.videos:
        raise BadEvent(f"watermark_text needs a video format, not {fmt.name}")
    preset = event.get("preset", "veryfast")
    if preset not in X264_PRESETS:
        raise BadEvent(f"preset must be one of {', '.join(X264_PRESETS)}")
    return EncodeOptions(fmt, video, audio, resolution, None if bitrate is None else str(bitrate), watermark, preset)


def _codec(value: Any, allowed: tuple[str, ...], field: str, fmt: Format) -> str:
    if value is None:
        return allowed[0]
    if value not in allowed:
        raise BadEvent(f"{field} for {fmt.name} must be one of {', '.join(allowed)}; got {value!r}")
    return str(value)
