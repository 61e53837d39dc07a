"""Output resolution and bitrate from the session's quality tier and aspect ratio (pure)."""

from __future__ import annotations

from dataclasses import dataclass

from avatar_crds.enums import AspectRatio, Quality
from avatar_crds.session import VideoSettings

FPS = 25

# Short side in pixels per tier. Multiples of 16 keep every codec's macroblocks whole.
_SHORT_SIDE: dict[Quality, int] = {
    Quality.MOCK: 480,
    Quality.LITE: 480,
    Quality.STANDARD: 720,
    Quality.PRO: 960,
}
# Bitrate for the 4:3 frame of each tier; other aspects scale with the pixel count.
_BITRATE_KBPS: dict[Quality, int] = {
    Quality.MOCK: 800,
    Quality.LITE: 1200,
    Quality.STANDARD: 2500,
    Quality.PRO: 4500,
}


@dataclass(frozen=True)
class VideoFormat:
    width: int
    height: int
    fps: int
    bitrate_kbps: int

    @property
    def size(self) -> tuple[int, int]:
        return (self.width, self.height)


def _even(value: float) -> int:
    return max(2, round(value / 2.0) * 2)


def resolution(quality: Quality, aspect: AspectRatio) -> tuple[int, int]:
    """(width, height): the tier's short side, the long side from the aspect ratio."""
    short = _SHORT_SIDE[quality]
    if aspect is AspectRatio.SQUARE:
        return (short, short)
    long = _even(short * 4 / 3)
    return (long, short) if aspect is AspectRatio.LANDSCAPE else (short, long)


def video_format(
    quality: Quality, aspect: AspectRatio, video: VideoSettings | None = None
) -> VideoFormat:
    """The published format: explicit width/height/bitrate in `video` win over the tier's."""
    width, height = resolution(quality, aspect)
    if video is not None and video.width is not None and video.height is not None:
        width, height = video.width, video.height
    if video is not None and video.bitrate_kbps is not None:
        bitrate = video.bitrate_kbps
    else:
        base_w, base_h = resolution(quality, AspectRatio.LANDSCAPE)
        scale = (width * height) / (base_w * base_h)
        bitrate = round(_BITRATE_KBPS[quality] * scale / 50.0) * 50
        bitrate = max(100, bitrate)
    return VideoFormat(width=width, height=height, fps=FPS, bitrate_kbps=bitrate)


def all_formats() -> list[tuple[Quality, AspectRatio, tuple[int, int]]]:
    """Every (quality, aspect, size) the tiers produce, for benchmarks and docs."""
    return [(q, a, resolution(q, a)) for q in Quality for a in AspectRatio]
