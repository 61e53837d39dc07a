from __future__ import annotations

import pytest

from avatar_crds.enums import AspectRatio, Quality
from avatar_crds.session import VideoSettings
from avatar_worker.render.resolution import FPS, all_formats, resolution, video_format


@pytest.mark.parametrize(
    ("quality", "aspect", "size"),
    [
        (Quality.MOCK, AspectRatio.LANDSCAPE, (640, 480)),
        (Quality.LITE, AspectRatio.PORTRAIT, (480, 640)),
        (Quality.LITE, AspectRatio.SQUARE, (480, 480)),
        (Quality.STANDARD, AspectRatio.LANDSCAPE, (960, 720)),
        (Quality.PRO, AspectRatio.PORTRAIT, (960, 1280)),
    ],
)
def test_resolution_from_quality_and_aspect(
    quality: Quality, aspect: AspectRatio, size: tuple[int, int]
) -> None:
    assert resolution(quality, aspect) == size


def test_every_tier_and_aspect_gives_even_sizes_with_the_right_shape() -> None:
    for quality, aspect, (width, height) in all_formats():
        assert width % 16 == 0, (quality, aspect)
        assert height % 16 == 0, (quality, aspect)
        ratio = {AspectRatio.LANDSCAPE: 4 / 3, AspectRatio.PORTRAIT: 3 / 4, AspectRatio.SQUARE: 1}
        assert width / height == pytest.approx(ratio[aspect], rel=0.01)


def test_higher_tiers_are_never_smaller() -> None:
    order = [Quality.MOCK, Quality.LITE, Quality.STANDARD, Quality.PRO]
    for aspect in AspectRatio:
        areas = [w * h for w, h in (resolution(q, aspect) for q in order)]
        assert areas == sorted(areas)


def test_explicit_size_and_bitrate_win() -> None:
    fmt = video_format(
        Quality.LITE,
        AspectRatio.LANDSCAPE,
        VideoSettings(width=1280, height=720, bitrate_kbps=3000),
    )
    assert (fmt.width, fmt.height, fmt.bitrate_kbps, fmt.fps) == (1280, 720, 3000, FPS)


def test_bitrate_scales_with_pixels_when_not_set() -> None:
    landscape = video_format(Quality.LITE, AspectRatio.LANDSCAPE)
    square = video_format(Quality.LITE, AspectRatio.SQUARE)
    pro = video_format(Quality.PRO, AspectRatio.LANDSCAPE)
    assert square.bitrate_kbps < landscape.bitrate_kbps < pro.bitrate_kbps
    assert landscape.fps == 25
