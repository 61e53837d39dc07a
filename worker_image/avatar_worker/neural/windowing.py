"""Which whisper features each video frame sees (pure).

Whisper's encoder emits 50 feature frames per second (feature k covers audio
[k/50, (k+1)/50) s); video runs at 25 fps (frame f's own audio is [f/25, (f+1)/25) s), so a
frame spans features 2f and 2f+1. MuseTalk v1.5 gives the UNet `pad_left` video frames of
context before the frame and `pad_right` after it: features 2(f - pad_left) up to
2(f + pad_right + 1), ten for 2 and 2, i.e. audio from 80 ms before the frame to 80 ms after
it, centred on the frame's own 40 ms. Features before the start of the audio are zeros.

The encoder runs on a window of audio that starts `history_s` before a batch's first frame
(snapped to a feature boundary, never before the start) and is padded with silence to its
fixed length; a feature's place in the window is its index minus the window's first feature.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_worker.neural.config import AUDIO_FPS, WHISPER_SAMPLE_RATE
from avatar_worker.render.resolution import FPS

FEATURES_PER_FRAME = AUDIO_FPS // FPS
SAMPLES_PER_FEATURE = WHISPER_SAMPLE_RATE // AUDIO_FPS
SAMPLES_PER_FRAME = WHISPER_SAMPLE_RATE // FPS


def frame_features(frame: int, pad_left: int, pad_right: int) -> range:
    """Absolute feature indices (50 per second from the audio's start) frame `frame` reads."""
    return range(
        FEATURES_PER_FRAME * (frame - pad_left), FEATURES_PER_FRAME * (frame + pad_right + 1)
    )


def feature_time_s(feature: int) -> tuple[float, float]:
    """The audio span, in seconds from the start, that feature `feature` describes."""
    return (feature / AUDIO_FPS, (feature + 1) / AUDIO_FPS)


@dataclass(frozen=True)
class EncoderWindow:
    first_feature: int  # absolute index of the window's first feature
    features: int  # the encoder's fixed output length

    @property
    def first_sample(self) -> int:
        """Index, in 16 kHz samples from the audio's start, of the window's first sample."""
        return self.first_feature * SAMPLES_PER_FEATURE

    @property
    def samples(self) -> int:
        return self.features * SAMPLES_PER_FEATURE


def encoder_window(
    first_frame: int, last_frame: int, pad_right: int, history_s: float, features: int
) -> EncoderWindow:
    """The window for frames first..last: `history_s` of past audio, then the frames' own."""
    start = max(0, FEATURES_PER_FRAME * first_frame - round(history_s * AUDIO_FPS))
    needed = FEATURES_PER_FRAME * (last_frame + pad_right + 1) - start
    if needed > features:
        raise ValueError(
            f"frames {first_frame}..{last_frame} need {needed} features, the encoder gives "
            f"{features}: render fewer frames per call or hear less history"
        )
    return EncoderWindow(first_feature=start, features=features)


def gather_positions(
    frame: int, window: EncoderWindow, pad_left: int, pad_right: int
) -> npt.NDArray[np.int64]:
    """Where each of the frame's features sits in the window's output; -1 for a zero feature
    (one before the start of the audio)."""
    absolute = np.asarray(frame_features(frame, pad_left, pad_right), dtype=np.int64)
    positions = absolute - window.first_feature
    positions[absolute < 0] = -1
    if positions.max() >= window.features or (positions[absolute >= 0] < 0).any():
        raise ValueError(f"frame {frame} reads features outside its encoder window")
    return positions
