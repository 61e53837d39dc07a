"""Audio features land on the right audio time: whisper's 50 features per second against
25 video frames per second, MuseTalk's 2 frames of context either side, and the 16 kHz history
the encoder reads."""

from __future__ import annotations

import numpy as np
import pytest

from avatar_worker.neural.audio_history import AudioHistory, Decimator
from avatar_worker.neural.config import TINY, WHISPER_SAMPLE_RATE
from avatar_worker.neural.session import NeuralSession
from avatar_worker.neural.windowing import (
    SAMPLES_PER_FEATURE,
    encoder_window,
    feature_time_s,
    frame_features,
    gather_positions,
)
from avatar_worker.render.base import FrameRequest
from avatar_worker.render.resolution import FPS
from worker_image.tests.neural_support import SAMPLES_PER_FRAME, astronaut, speech_requests


@pytest.mark.parametrize("frame", [0, 1, 7, 250])
def test_a_frame_reads_80_ms_either_side_of_its_own_audio(frame: int) -> None:
    features = frame_features(frame, pad_left=2, pad_right=2)
    assert len(features) == 10
    start, _ = feature_time_s(features[0])
    _, end = feature_time_s(features[-1])
    frame_start, frame_end = frame / FPS, (frame + 1) / FPS
    assert start == pytest.approx(frame_start - 0.08)
    assert end == pytest.approx(frame_end + 0.08)
    # The frame's own audio is the middle two features.
    assert feature_time_s(features[4])[0] == pytest.approx(frame_start)
    assert feature_time_s(features[5])[1] == pytest.approx(frame_end)


def test_features_before_the_start_are_zeros_and_the_rest_index_the_window() -> None:
    window = encoder_window(0, 0, pad_right=2, history_s=4.0, features=1500)
    assert window.first_feature == 0
    assert list(gather_positions(0, window, 2, 2)) == [-1, -1, -1, -1, 0, 1, 2, 3, 4, 5]
    window = encoder_window(300, 301, pad_right=2, history_s=4.0, features=1500)
    assert window.first_feature == 600 - 200  # four seconds before frame 300
    assert window.first_sample == 400 * SAMPLES_PER_FEATURE
    assert list(gather_positions(301, window, 2, 2)) == list(range(198, 208))


def test_a_window_too_short_for_the_frames_is_refused() -> None:
    with pytest.raises(ValueError, match="need"):
        encoder_window(100, 200, pad_right=2, history_s=1.0, features=100)


def test_decimation_keeps_a_tone_and_removes_what_would_alias() -> None:
    t = np.arange(48000) / 48000
    for hz, kept in ((440.0, True), (15000.0, False)):
        decimator = Decimator(48000)
        tone = (np.sin(2 * np.pi * hz * t) * 16000).astype(np.int16)
        out = np.concatenate([decimator.push(c) for c in np.split(tone, 25)])
        assert len(out) == 16000
        rms = float(np.sqrt(np.mean(out[1000:] ** 2)))
        assert (rms > 0.3) if kept else (rms < 0.02), (hz, rms)


def test_history_is_addressed_by_absolute_sample() -> None:
    history = AudioHistory(keep=100)
    history.append(np.arange(80, dtype=np.float32))
    history.append(np.arange(80, 160, dtype=np.float32))
    assert (history.start, history.end) == (60, 160)
    window = history.window(50, 20)
    assert list(window[:10]) == [0.0] * 10  # forgotten
    assert list(window[10:]) == list(range(60, 70))
    assert list(history.window(155, 10)[5:]) == [0.0] * 5  # not heard yet


def test_a_plan_carries_the_audio_heard_and_leaves_the_silence_after_it_out() -> None:
    session = NeuralSession(astronaut(), (320, 240), TINY)
    requests = speech_requests(30)
    session.hear(requests)
    plan = session.plan(requests[-1:])
    heard_16k = 30 * WHISPER_SAMPLE_RATE // FPS
    assert plan.window.first_sample + len(plan.samples) == heard_16k
    assert len(plan.samples) < plan.window.samples


def test_a_click_in_frame_n_lands_in_the_middle_of_frame_ns_features() -> None:
    """Through the session: the click's samples sit at the window positions that frame n's
    middle features (its own 40 ms) read, and nowhere else."""
    session = NeuralSession(astronaut(), (320, 240), TINY)
    click_frame = 30
    requests = []
    for index in range(40):
        audio = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
        if index == click_frame:
            audio[SAMPLES_PER_FRAME // 2 - 48 : SAMPLES_PER_FRAME // 2 + 48] = 20000
        requests.append(FrameRequest(index=index, time_s=index / FPS, audio=audio))
    session.hear(requests)
    plan = session.plan(requests[click_frame : click_frame + 1])
    loud = np.flatnonzero(np.abs(plan.samples) > 0.05)
    assert len(loud) > 0
    features_hit = set((loud // SAMPLES_PER_FEATURE).tolist())
    own = plan.positions[0][4:6].tolist()  # the frame's own two features
    assert features_hit <= set(own), (features_hit, own)
    # The window starts history_s before the frame, so the frame sits after that much audio.
    assert plan.window.first_sample == round((click_frame / FPS - TINY.history_s) * 16000)


def test_a_frames_look_ahead_fills_its_right_context_without_joining_the_history() -> None:
    """A click in the audio two frames after frame n, given as frame n's look-ahead, lands in
    frame n's last features; the next frame's own audio (silent here) replaces it."""
    session = NeuralSession(astronaut(), (320, 240), TINY)
    frame = 30
    click = np.zeros(2 * SAMPLES_PER_FRAME, dtype=np.int16)
    middle = SAMPLES_PER_FRAME + SAMPLES_PER_FRAME // 2
    click[middle - 48 : middle + 48] = 20000
    silent = np.zeros(SAMPLES_PER_FRAME, dtype=np.int16)
    requests = [FrameRequest(index=i, time_s=i / FPS, audio=silent) for i in range(frame)]
    requests.append(FrameRequest(index=frame, time_s=frame / FPS, audio=silent, upcoming=click))
    session.hear(requests)
    plan = session.plan(requests[-1:])
    loud = np.flatnonzero(np.abs(plan.samples) > 0.05)
    assert len(loud) > 0
    features_hit = set((loud // SAMPLES_PER_FEATURE).tolist())
    last_two = plan.positions[0][-2:].tolist()  # the features of frame n + 2's audio
    assert features_hit <= set(last_two), (features_hit, last_two)

    following = FrameRequest(index=frame + 1, time_s=(frame + 1) / FPS, audio=silent)
    session.hear([following])
    assert not (np.abs(session.plan([following]).samples) > 0.05).any()
