"""Synthetic speech-like audio for sessions with `syntheticAudioIfNoInput` (demos, smoke tests).

If nobody has sent any audio `after_s` (10) seconds after the worker started, the avatar talks
to itself: voiced "syllables" (harmonics of a gliding pitch shaped by two formant-like
resonances) at about four a second, in utterances of 1.5-3.5 s with pauses between them. The
first real audio ends it for the rest of the session. It is filled into silent frames only, is
never reported to anyone, and does not count as received audio (`lastAudioAt`).
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]
NO_INPUT_AFTER_S = 10.0


@dataclass(frozen=True)
class SyntheticPolicy:
    after_s: float = NO_INPUT_AFTER_S

    def active(self, now: float, started_at: float, first_input_at: float | None) -> bool:
        """Talk when no input ever arrived and `after_s` have passed since the start."""
        return first_input_at is None and now - started_at >= self.after_s


def utterance(rng: random.Random, sample_rate: int) -> PCM:
    """One utterance followed by a pause, as int16 PCM."""
    syllables = []
    total = rng.uniform(1.5, 3.5)
    elapsed = 0.0
    while elapsed < total:
        duration = rng.uniform(0.14, 0.32)
        syllables.append(duration)
        elapsed += duration
    f0_start, f0_end = rng.uniform(150, 220), rng.uniform(100, 150)
    pieces = []
    phase = np.zeros(24)
    position = 0.0
    for duration in syllables:
        n = int(duration * sample_rate)
        t = np.arange(n) / sample_rate
        frac = (position + t) / elapsed
        f0 = (
            f0_start + (f0_end - f0_start) * frac + 4.0 * np.sin(2 * math.pi * 5.5 * (position + t))
        )
        f1, f2 = rng.uniform(300, 850), rng.uniform(900, 2600)
        envelope = np.sin(math.pi * t / duration) ** 1.5 * rng.uniform(0.35, 1.0)
        signal = np.zeros(n)
        increment = 2 * math.pi * f0 / sample_rate
        cumulative = np.cumsum(increment)
        for k in range(1, len(phase) + 1):
            freq = k * f0.mean()
            if freq > sample_rate / 2 - 500:
                break
            gain = (
                math.exp(-(((freq - f1) / 130.0) ** 2))
                + 0.6 * math.exp(-(((freq - f2) / 220.0) ** 2))
                + 0.04
            ) / k**0.5
            signal += gain * np.sin(phase[k - 1] + k * cumulative)
            phase[k - 1] = (phase[k - 1] + k * cumulative[-1]) % (2 * math.pi)
        peak = float(np.max(np.abs(signal))) or 1.0
        pieces.append(signal / peak * envelope)
        position += duration
    pause = np.zeros(int(rng.uniform(0.4, 1.2) * sample_rate))
    audio = np.concatenate([*pieces, pause]) * 0.3
    return (np.clip(audio, -1.0, 1.0) * 32767).astype(np.int16)


def speech_like(seconds: float, sample_rate: int, seed: int = 1) -> PCM:
    """`seconds` of synthetic speech (utterances and pauses), deterministic for a seed."""
    voice = SyntheticVoice(sample_rate, seed=seed)
    return voice.next(int(seconds * sample_rate))


class SyntheticVoice:
    """An endless, seeded stream of utterances, read a chunk at a time."""

    def __init__(self, sample_rate: int, seed: int = 1) -> None:
        self._sample_rate = sample_rate
        self._rng = random.Random(seed)
        self._buffer = np.zeros(0, dtype=np.int16)

    def next(self, n: int) -> PCM:
        while len(self._buffer) < n:
            self._buffer = np.concatenate([self._buffer, utterance(self._rng, self._sample_rate)])
        out, self._buffer = self._buffer[:n], self._buffer[n:]
        return out
