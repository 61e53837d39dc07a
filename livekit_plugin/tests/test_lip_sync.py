"""The lip-sync measure of the end-to-end test, on real espeak-ng speech (the e2e test's TTS) and
mouths whose truth is known: it finds a following mouth and its lag, tolerates a drifting delay,
and its bound fails a mouth that ignores the audio."""

from __future__ import annotations

import io
import shutil
import subprocess
import wave

import numpy as np
import numpy.typing as npt
import pytest

from livekit_plugin.tests.lip_sync import (
    BIN_S,
    FOLLOWS,
    LipSync,
    binned_level,
    binned_mouth,
    correlation,
    measure,
)

WINDOW_S = 0.01  # the viewer's audio arrives in 10 ms frames
SECONDS = 5.2
FIRST = (
    "Everything you hear comes from the agent, and my lips follow it frame by frame, so you can "
    "watch me talk while the agent thinks about what to say next."
)
SECOND = (
    "A quick brown fox jumps over the lazy dog, then naps beside the river until the evening "
    "bells ring across the quiet valley below the hills."
)

Samples = npt.NDArray[np.int16]


def espeak(text: str) -> tuple[Samples, int]:
    executable = shutil.which("espeak-ng")
    if executable is None:
        pytest.skip("espeak-ng is not installed")
    wav = subprocess.run(
        [executable, "-v", "en-us", "-s", "170", "--stdout", text],
        check=True,
        capture_output=True,
    ).stdout
    with wave.open(io.BytesIO(wav)) as reader:
        rate = reader.getframerate()
        pcm = np.frombuffer(reader.readframes(reader.getnframes()), dtype=np.int16)
    return pcm[: int(SECONDS * rate)], rate


def heard(
    speech: tuple[Samples, int], delay_s: float, drift_s: float = 0.0
) -> list[tuple[float, Samples]]:
    """10 ms windows arriving `delay_s` late (plus `drift_s` more by the end), a little jittered."""
    pcm, rate = speech
    step = int(rate * WINDOW_S)
    jitter = np.random.default_rng(1)
    return [
        (
            start / rate + delay_s + drift_s * start / len(pcm) + jitter.uniform(0, 0.005),
            pcm[start : start + step],
        )
        for start in range(0, len(pcm) - step + 1, step)
    ]


def seen(speech: tuple[Samples, int], delay_s: float) -> list[tuple[float, int]]:
    """One frame per 40 ms arriving `delay_s` late, its mouth 0..7 from its own audio's level
    (-50..-10 dBFS): a mouth that follows the sound, as the worker's does."""
    pcm, rate = speech
    step = int(rate * BIN_S)
    jitter = np.random.default_rng(2)
    frames = []
    for index, start in enumerate(range(0, len(pcm) - step + 1, step)):
        chunk = pcm[start : start + step].astype(np.float64) / 32768.0
        dbfs = 10 * np.log10(max(float(np.mean(chunk**2)), 1e-10))
        opening = round(7 * min(max((dbfs + 50) / 40, 0.0), 1.0))
        frames.append((index * BIN_S + delay_s + jitter.uniform(0, 0.01), opening))
    return frames


def lip_sync_of(stamps: list[tuple[float, int]], windows: list[tuple[float, Samples]]) -> LipSync:
    return measure(binned_mouth(stamps, 0.0, SECONDS), binned_level(windows, 0.0, SECONDS))


@pytest.fixture(scope="module")
def first() -> tuple[Samples, int]:
    return espeak(FIRST)


@pytest.fixture(scope="module")
def second() -> tuple[Samples, int]:
    return espeak(SECOND)


def test_a_mouth_that_follows_the_speech_is_found_at_its_lag(first: tuple[Samples, int]) -> None:
    result = lip_sync_of(seen(first, delay_s=0.02), heard(first, delay_s=0.10))
    # The sound came 80 ms after the picture; the measure resolves one bin.
    assert abs(result.lag_ms - -80) <= BIN_S * 1000
    assert result.correlation >= FOLLOWS
    assert result.unrelated < FOLLOWS


def test_a_sound_delay_that_drifts_is_still_followed(first: tuple[Samples, int]) -> None:
    # A viewer's jitter buffer growing by 120 ms over the window, as on a loaded machine.
    result = lip_sync_of(seen(first, 0.02), heard(first, delay_s=0.10, drift_s=0.12))
    assert result.correlation >= FOLLOWS


def test_a_mouth_from_other_speech_fails_the_bound(
    first: tuple[Samples, int], second: tuple[Samples, int]
) -> None:
    assert lip_sync_of(seen(second, 0.02), heard(first, 0.10)).correlation < FOLLOWS


def test_a_mouth_half_a_second_late_fails_the_bound(first: tuple[Samples, int]) -> None:
    assert lip_sync_of(seen(first, 0.60), heard(first, 0.10)).correlation < FOLLOWS


def test_a_mouth_that_never_moves_follows_nothing(first: tuple[Samples, int]) -> None:
    still = [(at, 3) for at, _ in seen(first, 0.02)]
    assert lip_sync_of(still, heard(first, 0.10)).correlation == 0.0
    assert correlation(np.array([1.0, 2.0, np.nan]), np.array([np.nan, 1.0, 2.0])) == 0.0


def test_a_window_too_short_to_tell_sync_from_rhythm_is_refused() -> None:
    with pytest.raises(ValueError, match="too short"):
        measure(np.zeros(40), np.zeros(40))
