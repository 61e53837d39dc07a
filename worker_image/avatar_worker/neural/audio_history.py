"""A session's recent speech at whisper's 16 kHz, indexed by sample from the session's start
(pure numpy).

Frames bring 48 kHz audio (the output rate); a streaming windowed-sinc low-pass at 7.2 kHz then
every third sample gives 16 kHz without aliasing. Its 24-sample (0.5 ms) delay is well under a
feature's 20 ms and is not compensated.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_worker.neural.config import WHISPER_SAMPLE_RATE

F32 = npt.NDArray[np.float32]
_TAPS = 49
_CUTOFF_HZ = 7200.0


def lowpass_taps(rate: int, taps: int = _TAPS, cutoff_hz: float = _CUTOFF_HZ) -> F32:
    n = np.arange(taps) - (taps - 1) / 2
    fc = cutoff_hz / rate
    kernel = 2 * fc * np.sinc(2 * fc * n) * np.hanning(taps)
    out: F32 = (kernel / kernel.sum()).astype(np.float32)
    return out


class Decimator:
    """int16 mono at an integer multiple of 16 kHz -> float32 in [-1, 1] at 16 kHz, streaming.
    Each chunk's length must be a multiple of the factor (a 40 ms frame at 48 kHz is)."""

    def __init__(self, rate: int) -> None:
        if rate % WHISPER_SAMPLE_RATE:
            raise ValueError(f"audio at {rate} Hz is not a multiple of {WHISPER_SAMPLE_RATE} Hz")
        self.factor = rate // WHISPER_SAMPLE_RATE
        self._taps = lowpass_taps(rate) if self.factor > 1 else np.ones(1, dtype=np.float32)
        self._tail = np.zeros(len(self._taps) - 1, dtype=np.float32)

    def push(self, samples: npt.NDArray[np.int16]) -> F32:
        x = self._extend(samples)
        if len(self._tail):
            self._tail = x[-len(self._tail) :].copy()
        return self._filter(x)

    def preview(self, samples: npt.NDArray[np.int16]) -> F32:
        """What `push` would return for audio that may still change (a look-ahead), without
        keeping it: the next `push` continues from the last pushed audio. Samples past the last
        whole multiple of the factor are left out."""
        whole = len(samples) - len(samples) % self.factor
        if whole == 0:
            return np.zeros(0, dtype=np.float32)
        return self._filter(self._extend(samples[:whole]))

    def _extend(self, samples: npt.NDArray[np.int16]) -> F32:
        if len(samples) % self.factor:
            raise ValueError(f"{len(samples)} samples is not a multiple of {self.factor}")
        return np.concatenate([self._tail, samples.astype(np.float32) / 32768.0])

    def _filter(self, x: F32) -> F32:
        filtered = np.convolve(x, self._taps, mode="valid")
        out: F32 = filtered[:: self.factor].astype(np.float32)
        return out


class AudioHistory:
    """The last `keep` 16 kHz samples, addressable by absolute sample index."""

    def __init__(self, keep: int) -> None:
        self._keep = keep
        self._samples = np.zeros(0, dtype=np.float32)
        self.start = 0  # absolute index of self._samples[0]

    @property
    def end(self) -> int:
        return self.start + len(self._samples)

    def append(self, samples: F32) -> None:
        self._samples = np.concatenate([self._samples, samples])
        drop = max(0, len(self._samples) - self._keep)
        if drop:
            self._samples = self._samples[drop:]
            self.start += drop

    def window(self, first: int, length: int, ahead: F32 | None = None) -> F32:
        """Samples [first, first + length), silence where nothing has been heard (yet); `ahead`
        (tentative audio after the last heard sample) fills in from `end`."""
        out = np.zeros(length, dtype=np.float32)
        lo, hi = max(first, self.start), min(first + length, self.end)
        if hi > lo:
            out[lo - first : hi - first] = self._samples[lo - self.start : hi - self.start]
        if ahead is not None and len(ahead):
            lo, hi = max(first, self.end), min(first + length, self.end + len(ahead))
            if hi > lo:
                out[lo - first : hi - first] = ahead[lo - self.end : hi - self.end]
        return out
