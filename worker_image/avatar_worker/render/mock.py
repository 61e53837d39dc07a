"""`mock` tier: synthetic frames whose pixels carry the frame number.

The frame is a grid of 6 x 5 big cells, each one bit (near-white = 1, near-black = 0) on a grey
background, so the code survives VP8/H264 at any sensible bitrate and any downscaling:

    bits 0..17   frame number (LSB first; wraps after 2**18 frames, about 2.9 hours)
    bits 18..20  mouth opening, quantised to 0..7
    bit  21      speaking: this frame's audio is audible speech
    bits 22..24  checksum: (number of ones in bits 0..21 + 3) modulo 8
    bits 25..29  fixed sync pattern 1 0 1 1 0, so a black, white or grey frame never decodes

A subscriber decodes each received frame with `decode`, which returns None for a frame that
does not read cleanly (a frame caught mid-transition by the encoder, or no stamp at all).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_worker.render.base import RGBA_CHANNELS, FrameByFrameRenderer, FrameRequest, Frames

COLS = 6
ROWS = 5
FRAME_BITS = 18
LEVEL_BITS = 3
CHECK_BITS = 3
SYNC = (1, 0, 1, 1, 0)
FRAME_MODULUS = 1 << FRAME_BITS
_PAYLOAD_BITS = FRAME_BITS + LEVEL_BITS + 1
_ONE = 235
_ZERO = 20
_BACKGROUND = 128
_MARGIN = 0.04  # of the frame, around the grid
_GUTTER = 0.12  # of a cell, between cells


@dataclass(frozen=True)
class Stamp:
    frame: int
    level: int  # 0..7
    speaking: bool


def encode_bits(stamp: Stamp) -> list[int]:
    bits = [(stamp.frame >> i) & 1 for i in range(FRAME_BITS)]
    bits += [(stamp.level >> i) & 1 for i in range(LEVEL_BITS)]
    bits.append(1 if stamp.speaking else 0)
    check = _checksum(bits)
    bits += [(check >> i) & 1 for i in range(CHECK_BITS)]
    bits += SYNC
    return bits


def _checksum(payload: Sequence[int]) -> int:
    return (sum(payload) + 3) % (1 << CHECK_BITS)


def decode_bits(bits: Sequence[int]) -> Stamp | None:
    if len(bits) != COLS * ROWS:
        return None
    payload = list(bits[:_PAYLOAD_BITS])
    check = sum(bit << i for i, bit in enumerate(bits[_PAYLOAD_BITS : _PAYLOAD_BITS + CHECK_BITS]))
    if _checksum(payload) != check or tuple(bits[_PAYLOAD_BITS + CHECK_BITS :]) != SYNC:
        return None
    frame = sum(bit << i for i, bit in enumerate(payload[:FRAME_BITS]))
    level = sum(bit << i for i, bit in enumerate(payload[FRAME_BITS : FRAME_BITS + LEVEL_BITS]))
    return Stamp(frame=frame, level=level, speaking=bool(payload[-1]))


def _cells(width: int, height: int) -> list[tuple[int, int, int, int]]:
    """(x0, y0, x1, y1) of every cell, row-major, inside the margins and gutters."""
    mx, my = int(width * _MARGIN), int(height * _MARGIN)
    cw, ch = (width - 2 * mx) / COLS, (height - 2 * my) / ROWS
    gx, gy = cw * _GUTTER / 2, ch * _GUTTER / 2
    cells = []
    for row in range(ROWS):
        for col in range(COLS):
            x0, y0 = mx + col * cw, my + row * ch
            cells.append((int(x0 + gx), int(y0 + gy), int(x0 + cw - gx), int(y0 + ch - gy)))
    return cells


def level_of(opening: float) -> int:
    return round(min(1.0, max(0.0, opening)) * 7)


class MockRenderer(FrameByFrameRenderer):
    """Draws the stamp of each request; a few microseconds of numpy per frame."""

    def __init__(self, width: int, height: int) -> None:
        super().__init__((width, height))
        self._cells = _cells(width, height)
        self._background = np.full((height, width, RGBA_CHANNELS), _BACKGROUND, dtype=np.uint8)
        self._background[..., 3] = 255

    def stamp(self, request: FrameRequest) -> Stamp:
        return Stamp(
            frame=request.index % FRAME_MODULUS,
            level=level_of(request.mouth.open),
            speaking=request.speaking,
        )

    def render(self, batch: Sequence[FrameRequest]) -> Frames:
        out = np.empty((len(batch), self._height, self._width, RGBA_CHANNELS), dtype=np.uint8)
        for i, request in enumerate(batch):
            frame = out[i]
            frame[...] = self._background
            for (x0, y0, x1, y1), bit in zip(
                self._cells, encode_bits(self.stamp(request)), strict=True
            ):
                frame[y0:y1, x0:x1, :3] = _ONE if bit else _ZERO
        return out

    def close(self) -> None:
        pass


def luma(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    """Luminance of an RGB(A) frame, or the frame itself if it is already one channel."""
    if frame.ndim == 2:
        return frame.astype(np.float32)
    rgb = frame[..., :3].astype(np.float32)
    return rgb @ np.array([0.299, 0.587, 0.114], dtype=np.float32)


def decode(frame: npt.NDArray[np.uint8]) -> Stamp | None:
    """The stamp of a received frame of any size, or None if it does not read cleanly."""
    y = luma(frame)
    height, width = y.shape
    bits = []
    for x0, y0, x1, y1 in _cells(width, height):
        # The middle half of the cell: clear of block edges and ringing.
        qx, qy = (x1 - x0) // 4, (y1 - y0) // 4
        inner = y[y0 + qy : y1 - qy, x0 + qx : x1 - qx]
        if inner.size == 0:
            return None
        value = float(inner.mean())
        if _ZERO + 45 < value < _ONE - 45:
            return None  # neither clearly dark nor clearly bright
        bits.append(1 if value > _BACKGROUND else 0)
    return decode_bits(bits)
