"""PCM plumbing for the inputs: bytes -> int16 samples, any channel count -> mono, any rate ->
the output rate (pure, except `Resampler`, which wraps the SDK's native resampler)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from livekit import rtc

PCM = npt.NDArray[np.int16]


class ByteAligner:
    """Byte stream chunks can split a sample (or a multi-channel frame) in two: keep the tail."""

    def __init__(self, frame_bytes: int) -> None:
        self._frame_bytes = frame_bytes
        self._rest = b""

    def push(self, data: bytes) -> bytes:
        data = self._rest + data
        cut = len(data) - len(data) % self._frame_bytes
        self._rest = data[cut:]
        return data[:cut]


def to_mono(data: bytes, channels: int) -> PCM:
    """Interleaved int16 little-endian PCM -> mono int16 (channels averaged)."""
    samples = np.frombuffer(data, dtype="<i2")
    if channels <= 1:
        return samples.astype(np.int16, copy=True)
    frames = samples[: len(samples) - len(samples) % channels].reshape(-1, channels)
    mono: PCM = frames.mean(axis=1).round().astype(np.int16)
    return mono


class Resampler:
    """Streaming mono resampler to `output_rate`; a pass-through when the rates match."""

    def __init__(self, input_rate: int, output_rate: int) -> None:
        self._input_rate = input_rate
        self._native = (
            None
            if input_rate == output_rate
            else rtc.AudioResampler(
                input_rate, output_rate, num_channels=1, quality=rtc.AudioResamplerQuality.MEDIUM
            )
        )

    def push(self, samples: PCM) -> PCM:
        if self._native is None or len(samples) == 0:
            return samples
        frame = rtc.AudioFrame(samples.tobytes(), self._input_rate, 1, len(samples))
        return _join(self._native.push(frame))

    def flush(self) -> PCM:
        if self._native is None:
            return np.zeros(0, dtype=np.int16)
        return _join(self._native.flush())


def _join(frames: list[rtc.AudioFrame]) -> PCM:
    if not frames:
        return np.zeros(0, dtype=np.int16)
    return np.concatenate(
        [np.frombuffer(bytes(frame.data), dtype=np.int16) for frame in frames]
    ).astype(np.int16, copy=False)
