from __future__ import annotations

import itertools

import numpy as np
import pytest

from avatar_worker.render.visemes import (
    CLOSED,
    FULL_OPEN_DBFS,
    SILENCE_DBFS,
    MouthShape,
    Viseme,
    VisemeTracker,
    frame_blocks,
    frame_shapes,
    openness_from_level,
    rms_dbfs,
    spectral_centroid,
    target_shape,
    width_from_centroid,
)

RATE = 48000


def sine(freq: float, seconds: float = 0.04, amplitude: float = 0.5) -> np.ndarray:
    t = np.arange(int(RATE * seconds)) / RATE
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def test_rms_of_full_scale_sine_is_minus_3_dbfs() -> None:
    assert rms_dbfs(sine(1000, amplitude=1.0)) == pytest.approx(-3.01, abs=0.05)


def test_silence_and_empty_blocks_are_very_quiet() -> None:
    assert rms_dbfs(np.zeros(1920, dtype=np.int16)) <= -100
    assert rms_dbfs(np.zeros(0, dtype=np.int16)) <= -100


def test_openness_is_clamped_monotonic_and_eased() -> None:
    levels = np.linspace(-80, 0, 81)
    values = [openness_from_level(float(level)) for level in levels]
    assert values[0] == 0.0
    assert values[-1] == 1.0
    assert all(b >= a for a, b in itertools.pairwise(values))
    assert openness_from_level(SILENCE_DBFS) == 0.0
    assert openness_from_level(FULL_OPEN_DBFS) == 1.0
    assert openness_from_level((SILENCE_DBFS + FULL_OPEN_DBFS) / 2) == pytest.approx(0.5)


def test_spectral_centroid_finds_a_pure_tone() -> None:
    assert spectral_centroid(sine(1000), RATE) == pytest.approx(1000, rel=0.05)
    assert spectral_centroid(np.zeros(1920, dtype=np.int16), RATE) == 0.0


def test_dark_sounds_round_and_bright_sounds_spread_the_lips() -> None:
    assert width_from_centroid(300) == -1.0
    assert width_from_centroid(5000) == 1.0
    assert width_from_centroid(0) == 0.0
    assert target_shape(sine(250), RATE).viseme is Viseme.ROUND
    assert target_shape(sine(4000), RATE).viseme is Viseme.SPREAD
    assert target_shape(sine(1200), RATE).viseme is Viseme.OPEN
    assert target_shape(np.zeros(1920, dtype=np.int16), RATE) == CLOSED


def test_louder_audio_opens_the_mouth_further() -> None:
    quiet = target_shape(sine(800, amplitude=0.02), RATE).open
    loud = target_shape(sine(800, amplitude=0.5), RATE).open
    assert 0 < quiet < loud


def test_tracker_opens_fast_and_closes_within_a_few_frames() -> None:
    tracker = VisemeTracker(25)
    first = tracker.update(sine(800), RATE)
    assert first.open > 0.5  # one 40 ms frame is enough to open
    closing = [tracker.update(np.zeros(1920, dtype=np.int16), RATE).open for _ in range(6)]
    assert all(b < a for a, b in zip([first.open, *closing], closing, strict=False))
    assert closing[-1] < 0.01 or tracker.shape == CLOSED


def test_frame_blocks_cover_the_audio_and_pad_the_last_block() -> None:
    audio = np.ones(1920 * 2 + 100, dtype=np.int16)
    blocks = list(frame_blocks(audio, RATE, 25))
    assert [len(b) for b in blocks] == [1920, 1920, 1920]
    assert blocks[-1][100:].sum() == 0


def test_frame_shapes_follow_a_burst() -> None:
    audio = np.concatenate(
        [np.zeros(1920 * 5, dtype=np.int16), sine(600, 0.4), np.zeros(1920 * 10, dtype=np.int16)]
    )
    shapes = frame_shapes(audio, RATE, 25)
    assert len(shapes) == 25
    assert all(s == CLOSED for s in shapes[:5])
    assert all(s.open > 0.5 for s in shapes[6:15])
    assert shapes[-1].open < 0.01


def test_viseme_classes() -> None:
    assert MouthShape(0.0, 0.0).viseme is Viseme.SILENT
    assert MouthShape(0.5, 0.8).viseme is Viseme.SPREAD
    assert MouthShape(0.5, -0.8).viseme is Viseme.ROUND
    assert MouthShape(0.5, 0.0).viseme is Viseme.OPEN
