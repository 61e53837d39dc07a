"""Shared pieces of the neural tier tests: a tiny random model in the published layout, the
astronaut portrait, and speech-like frame requests."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avatar_worker.neural.session import OUTPUT_RATE
from avatar_worker.render.base import FrameRequest
from avatar_worker.render.portrait import FaceGeometry, Portrait
from avatar_worker.render.resolution import FPS
from worker_image.tests.astronaut import ASTRONAUT_FACE, astronaut_rgb

SAMPLES_PER_FRAME = OUTPUT_RATE // FPS


def astronaut() -> Portrait:
    return Portrait(image=astronaut_rgb(), face=FaceGeometry.from_face(ASTRONAUT_FACE))


def write_tiny(directory: Path) -> Path:
    from avatar_worker.neural.cli import main

    assert main(["write-tiny", str(directory)]) == 0
    return directory


def speech_requests(count: int, seed: int = 0, start: int = 0) -> list[FrameRequest]:
    """Frames of syllable-like noise bursts (loud and quiet in turn), one chunk each."""
    rng = np.random.default_rng(seed)
    out = []
    for index in range(start, start + count):
        loud = (index // 3) % 2 == 0
        audio = rng.standard_normal(SAMPLES_PER_FRAME) * (6000 if loud else 300)
        out.append(
            FrameRequest(
                index=index,
                time_s=index / FPS,
                speaking=loud,
                audio=audio.astype(np.int16),
            )
        )
    return out
