from __future__ import annotations

import numpy as np
import pytest

from avatar_worker.audio.pcm import ByteAligner, Resampler, to_mono
from avatar_worker.audio.synthetic import SyntheticPolicy, SyntheticVoice, speech_like
from avatar_worker.render.visemes import frame_shapes, rms_dbfs

RATE = 48000


def test_byte_aligner_never_splits_a_sample_frame() -> None:
    aligner = ByteAligner(4)  # stereo int16
    out = [aligner.push(piece) for piece in (b"\x01\x02\x03", b"\x04\x05", b"\x06\x07\x08\x09")]
    assert out == [b"", b"\x01\x02\x03\x04", b"\x05\x06\x07\x08"]


def test_to_mono_averages_channels() -> None:
    stereo = np.array([100, 300, -50, 50, 7, 7], dtype="<i2").tobytes()
    assert to_mono(stereo, 2).tolist() == [200, 0, 7]
    assert to_mono(stereo, 1).tolist() == [100, 300, -50, 50, 7, 7]


@pytest.mark.parametrize("rate", [16000, 24000, 44100])
def test_resampler_keeps_duration_and_pitch(rate: int) -> None:
    t = np.arange(rate) / rate
    tone = (np.sin(2 * np.pi * 440 * t) * 16000).astype(np.int16)
    resampler = Resampler(rate, RATE)
    parts = [resampler.push(tone[i : i + rate // 50]) for i in range(0, rate, rate // 50)]
    out = np.concatenate([*parts, resampler.flush()])
    assert len(out) == pytest.approx(RATE, rel=0.01)
    spectrum = np.abs(np.fft.rfft(out[4800:-4800].astype(float)))
    peak = np.argmax(spectrum) * RATE / (len(out) - 9600)
    assert peak == pytest.approx(440, rel=0.01)


def test_same_rate_resampler_passes_through() -> None:
    data = np.arange(10, dtype=np.int16)
    assert Resampler(RATE, RATE).push(data) is data


def test_synthetic_speech_has_syllables_and_pauses() -> None:
    audio = speech_like(12.0, RATE, seed=4)
    assert len(audio) == 12 * RATE
    shapes = frame_shapes(audio, RATE, 25)
    opening = np.array([shape.open for shape in shapes])
    assert (opening > 0.5).mean() > 0.3  # mostly talking ...
    assert (opening == 0.0).mean() > 0.05  # ... with pauses
    # syllables: the loudness envelope rises and falls several times a second
    levels = np.array([rms_dbfs(audio[i : i + 1920]) for i in range(0, len(audio), 1920)])
    rises = np.sum((levels[1:] > -30) & (levels[:-1] <= -30))
    assert rises / 12.0 > 1.5


def test_synthetic_voice_is_deterministic_and_continuous() -> None:
    a, b = SyntheticVoice(RATE, seed=9), SyntheticVoice(RATE, seed=9)
    chunks_a = np.concatenate([a.next(1920) for _ in range(200)])
    chunks_b = b.next(1920 * 200)
    assert np.array_equal(chunks_a, chunks_b)


def test_synthetic_policy_only_before_any_input() -> None:
    policy = SyntheticPolicy(after_s=10)
    assert not policy.active(now=109.9, started_at=100.0, first_input_at=None)
    assert policy.active(now=110.0, started_at=100.0, first_input_at=None)
    assert not policy.active(now=500.0, started_at=100.0, first_input_at=105.0)
