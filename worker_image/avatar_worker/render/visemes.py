"""Audio -> mouth shape, one value per video frame (pure; numpy only).

The lite renderer needs two numbers per frame: how far the jaw drops (`open`, from the loudness
of the frame's audio) and whether the lips spread or round (`width`, from where the energy sits
in the spectrum: "ee"/"s" are bright, "oo"/"o" are dark). A small attack/release smoother keeps
the mouth from flickering between frames without lagging the speech by more than one frame.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from enum import StrEnum

import numpy as np
import numpy.typing as npt

# Loudness (dBFS of the frame's RMS) below which the mouth is closed, and at which it is fully open.
SILENCE_DBFS = -50.0
FULL_OPEN_DBFS = -16.0
# Spectral centroid at which lips are fully rounded / fully spread (log scale between them).
ROUND_HZ = 500.0
SPREAD_HZ = 3000.0


class Viseme(StrEnum):
    """Coarse mouth classes, for logs and tests; the renderer uses the continuous shape."""

    SILENT = "sil"
    OPEN = "aa"
    SPREAD = "ee"
    ROUND = "oo"


@dataclass(frozen=True)
class MouthShape:
    open: float = 0.0  # 0 closed .. 1 jaw fully dropped
    width: float = 0.0  # -1 rounded .. 0 neutral .. +1 spread

    @property
    def viseme(self) -> Viseme:
        if self.open < 0.08:
            return Viseme.SILENT
        if self.width > 0.35:
            return Viseme.SPREAD
        if self.width < -0.35:
            return Viseme.ROUND
        return Viseme.OPEN


CLOSED = MouthShape()


def as_float(samples: npt.NDArray[np.generic]) -> npt.NDArray[np.float32]:
    """int16 PCM (or floats in [-1, 1]) as float32 in [-1, 1]; multi-channel input as (n, ch)."""
    if samples.dtype == np.int16:
        out = samples.astype(np.float32) / 32768.0
    else:
        out = samples.astype(np.float32, copy=False)
    if out.ndim == 2:
        out = out.mean(axis=1, dtype=np.float32)
    return out


def rms_dbfs(samples: npt.NDArray[np.generic]) -> float:
    """Loudness of a block in dB relative to full scale; -inf-safe (silence gives -120)."""
    values = as_float(samples)
    if values.size == 0:
        return -120.0
    rms = float(np.sqrt(np.mean(np.square(values, dtype=np.float64))))
    return 20.0 * math.log10(max(rms, 1e-6))


def openness_from_level(
    level_dbfs: float, silence_dbfs: float = SILENCE_DBFS, full_dbfs: float = FULL_OPEN_DBFS
) -> float:
    """Jaw opening in [0, 1]: 0 at or below `silence_dbfs`, 1 at or above `full_dbfs`, eased."""
    x = (level_dbfs - silence_dbfs) / (full_dbfs - silence_dbfs)
    x = min(1.0, max(0.0, x))
    return x * x * (3.0 - 2.0 * x)


def spectral_centroid(samples: npt.NDArray[np.generic], sample_rate: int) -> float:
    """Energy-weighted mean frequency in Hz (0 for silence)."""
    values = as_float(samples)
    if values.size < 8:
        return 0.0
    window = np.hanning(values.size).astype(np.float32)
    spectrum = np.abs(np.fft.rfft(values * window))
    power = spectrum * spectrum
    total = float(power.sum())
    if total <= 1e-12:
        return 0.0
    freqs = np.fft.rfftfreq(values.size, d=1.0 / sample_rate)
    return float((freqs * power).sum() / total)


def width_from_centroid(centroid_hz: float) -> float:
    """Lip spread in [-1, 1] from the spectral centroid, on a log-frequency scale."""
    if centroid_hz <= 0.0:
        return 0.0
    lo, hi = math.log(ROUND_HZ), math.log(SPREAD_HZ)
    x = (math.log(centroid_hz) - lo) / (hi - lo)
    return min(1.0, max(-1.0, 2.0 * x - 1.0))


def target_shape(samples: npt.NDArray[np.generic], sample_rate: int) -> MouthShape:
    """The mouth this block of audio asks for, before smoothing."""
    level = rms_dbfs(samples)
    opening = openness_from_level(level)
    if opening <= 0.0:
        return CLOSED
    return MouthShape(
        open=opening, width=width_from_centroid(spectral_centroid(samples, sample_rate))
    )


def smoothing_factor(frame_seconds: float, time_constant: float) -> float:
    """Exponential smoothing weight of the new value for one step of `frame_seconds`."""
    if time_constant <= 0.0:
        return 1.0
    return 1.0 - math.exp(-frame_seconds / time_constant)


class VisemeTracker:
    """Per-frame smoother: opens fast (attack), closes a little slower (release)."""

    def __init__(self, fps: float, *, attack_s: float = 0.015, release_s: float = 0.05) -> None:
        self._attack = smoothing_factor(1.0 / fps, attack_s)
        self._release = smoothing_factor(1.0 / fps, release_s)
        self._shape = CLOSED

    @property
    def shape(self) -> MouthShape:
        return self._shape

    def reset(self) -> None:
        self._shape = CLOSED

    def update(self, samples: npt.NDArray[np.generic], sample_rate: int) -> MouthShape:
        target = target_shape(samples, sample_rate)
        prev = self._shape
        k = self._attack if target.open >= prev.open else self._release
        opening = prev.open + k * (target.open - prev.open)
        width = prev.width + self._attack * (target.width - prev.width)
        if opening < 1e-3:
            opening, width = 0.0, 0.0
        self._shape = MouthShape(open=opening, width=width)
        return self._shape


def frame_blocks(
    samples: npt.NDArray[np.generic], sample_rate: int, fps: float
) -> Iterator[npt.NDArray[np.generic]]:
    """Consecutive per-frame blocks of `samples` (the last one zero-padded)."""
    per_frame = round(sample_rate / fps)
    for start in range(0, len(samples), per_frame):
        block = samples[start : start + per_frame]
        if len(block) < per_frame:
            block = np.concatenate([block, np.zeros(per_frame - len(block), dtype=block.dtype)])
        yield block


def frame_shapes(
    samples: npt.NDArray[np.generic], sample_rate: int, fps: float
) -> list[MouthShape]:
    """Smoothed mouth shape for every video frame spanned by `samples`."""
    tracker = VisemeTracker(fps)
    return [tracker.update(block, sample_rate) for block in frame_blocks(samples, sample_rate, fps)]
