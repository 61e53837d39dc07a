"""The renderer interface: a batch of frame requests in, a batch of RGBA frames out.

CPU tiers (`mock`, `lite`) render one frame per call. A GPU model (`standard`, `pro`) sets
`max_batch` > 1: the frame clock then takes that many frames' audio before calling `render`, so
one forward pass makes a batch (each request carries its frame's raw audio as well as the mouth
shape). `lookahead_frames` declares how much future audio a model needs per frame (the
`standard` tier's right context of audio features); the frame clock then gives each request the
audio known to follow it (`upcoming`) without delaying the output: both CPU tiers need none.
`render` is called from a worker thread, never concurrently with itself, and must not touch the
event loop; the pipeline keeps at most one call in flight.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Protocol, runtime_checkable

import numpy as np
import numpy.typing as npt

from avatar_worker.render.visemes import CLOSED, MouthShape

RGBA_CHANNELS = 4
Frames = npt.NDArray[np.uint8]  # (batch, height, width, 4), RGBA, C-contiguous


def _no_audio() -> npt.NDArray[np.int16]:
    return np.zeros(0, dtype=np.int16)


@dataclass(frozen=True)
class FrameRequest:
    """Everything a renderer may use for one output frame."""

    index: int  # frame number since the worker started publishing (0, 1, 2, ...)
    time_s: float  # media time of the frame: index / fps
    mouth: MouthShape = CLOSED  # smoothed mouth shape from this frame's audio
    speaking: bool = False  # this frame carries audible speech
    # The frame's own audio (mono int16 at the output rate): models that read raw audio
    # (an audio->viseme network) use it instead of `mouth`.
    audio: npt.NDArray[np.int16] = field(default_factory=_no_audio)
    # The audio that follows it, up to `lookahead_frames` frames' worth, as far as it is known
    # when the frame is rendered (shorter, or empty, when it has not arrived): tentative, the
    # following frames' own `audio` is what plays.
    upcoming: npt.NDArray[np.int16] = field(default_factory=_no_audio)


@runtime_checkable
class Renderer(Protocol):
    @property
    def size(self) -> tuple[int, int]:
        """(width, height) of every frame it returns."""
        ...

    @property
    def max_batch(self) -> int:
        """How many frames it wants per `render` call (1 for the CPU tiers)."""
        ...

    @property
    def lookahead_frames(self) -> int:
        """Frames of future audio it needs before rendering a frame (0 for the CPU tiers)."""
        ...

    def render(self, batch: Sequence[FrameRequest]) -> Frames:
        """One RGBA frame per request, in order: shape (len(batch), height, width, 4)."""
        ...

    def close(self) -> None: ...


class FrameByFrameRenderer:
    """Shared shape of the CPU tiers: one frame per call, no look-ahead, a fixed size."""

    def __init__(self, size: tuple[int, int]) -> None:
        self._width, self._height = size

    @property
    def size(self) -> tuple[int, int]:
        return (self._width, self._height)

    @property
    def max_batch(self) -> int:
        return 1

    @property
    def lookahead_frames(self) -> int:
        return 0
