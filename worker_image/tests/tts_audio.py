"""What the TTS tests measure in the audio they get."""

from __future__ import annotations

from collections.abc import AsyncIterator

import numpy as np

from avatar_worker.tts.engine import AudioChunk
from worker_image.tests.support import window_rms

SPEECH_RMS = 0.02  # of full scale: a 20 ms window this loud has speech in it


def speech_seconds(pcm: bytes, sample_rate: int) -> float:
    """Seconds of 20 ms windows with speech energy."""
    window = sample_rate // 50
    loud = window_rms(np.frombuffer(pcm, dtype="<i2"), window) > SPEECH_RMS
    return float(loud.sum() * 0.02)


async def collect(chunks: AsyncIterator[AudioChunk]) -> tuple[list[AudioChunk], bytes]:
    received = [chunk async for chunk in chunks]
    return received, b"".join(chunk.pcm for chunk in received)
