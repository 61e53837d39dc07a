from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from avatar_worker.render.base import FrameRequest, Renderer
from avatar_worker.render.mock import (
    COLS,
    FRAME_MODULUS,
    ROWS,
    MockRenderer,
    Stamp,
    decode,
    decode_bits,
    encode_bits,
    level_of,
)
from avatar_worker.render.visemes import MouthShape


def test_bits_round_trip_and_checksum_rejects_a_flipped_bit() -> None:
    stamp = Stamp(frame=123_457, level=5, speaking=True)
    bits = encode_bits(stamp)
    assert len(bits) == COLS * ROWS
    assert decode_bits(bits) == stamp
    for i in range(len(bits)):
        flipped = list(bits)
        flipped[i] ^= 1
        assert decode_bits(flipped) != stamp


def test_renderer_stamps_frame_number_mouth_level_and_speaking() -> None:
    renderer = MockRenderer(640, 480)
    assert isinstance(renderer, Renderer)
    requests = [
        FrameRequest(index=0, time_s=0.0),
        FrameRequest(index=77, time_s=3.08, mouth=MouthShape(1.0, 0.0), speaking=True),
        FrameRequest(index=FRAME_MODULUS + 3, time_s=0.0),
    ]
    frames = renderer.render(requests)
    assert frames.shape == (3, 480, 640, 4)
    assert frames.dtype == np.uint8
    assert (frames[..., 3] == 255).all()
    assert decode(frames[0]) == Stamp(0, 0, False)
    assert decode(frames[1]) == Stamp(77, 7, True)
    assert decode(frames[2]) == Stamp(3, 0, False)


@pytest.mark.parametrize("size", [(640, 480), (480, 640), (480, 480), (1280, 960)])
def test_stamps_survive_lossy_compression_and_scaling(size: tuple[int, int]) -> None:
    renderer = MockRenderer(*size)
    for index in (1, 4095, 90_000):
        frame = renderer.render([FrameRequest(index=index, time_s=0.0, speaking=index % 2 == 1)])[0]
        image = Image.fromarray(frame[..., :3]).resize((size[0] // 3, size[1] // 3))
        buffer = io.BytesIO()
        image.save(buffer, format="JPEG", quality=15)
        damaged = np.asarray(Image.open(buffer).convert("RGB"))
        noisy = np.clip(
            damaged.astype(int) + np.random.default_rng(index).integers(-25, 26, damaged.shape),
            0,
            255,
        )
        assert decode(noisy.astype(np.uint8)) == Stamp(index, 0, index % 2 == 1)


def test_a_frame_that_is_not_a_stamp_does_not_decode() -> None:
    for value in (0, 16, 128, 235, 255):  # black, grey and white frames
        assert decode(np.full((480, 640, 3), value, dtype=np.uint8)) is None
    rng = np.random.default_rng(1)
    assert decode(rng.integers(0, 256, (480, 640, 3), dtype=np.uint8)) is None


def test_level_quantisation() -> None:
    assert [level_of(x) for x in (0.0, 0.5, 1.0, 2.0, -1.0)] == [0, 4, 7, 7, 0]
