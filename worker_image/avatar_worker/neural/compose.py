"""Pasting a generated face into a frame through a feathered mask (pure numpy).

out = frame * (1 - mask) + face * mask, rounded: where the mask is 0 the frame is untouched,
where it is 1 the pixel is the face's. The crop may be shifted (the head's idle sway) so part of
it falls outside the frame; that part is skipped.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
from PIL import Image

from avatar_worker.neural.face import F32

U8 = npt.NDArray[np.uint8]


def resize_face(face: U8, side: int) -> U8:
    """The model's square RGB output at the crop's size in the frame."""
    if face.shape[0] == side:
        return face
    resized = Image.fromarray(face).resize((side, side), Image.Resampling.BICUBIC)
    return np.asarray(resized, dtype=np.uint8)


def paste(frame: U8, face: U8, mask: F32, x: int, y: int) -> None:
    """Blend `face` (side, side, 3) into `frame` (H, W, 3 or 4) at (x, y), in place."""
    side = face.shape[0]
    height, width = frame.shape[:2]
    x0, y0 = max(x, 0), max(y, 0)
    x1, y1 = min(x + side, width), min(y + side, height)
    if x1 <= x0 or y1 <= y0:
        return
    crop = (slice(y0 - y, y1 - y), slice(x0 - x, x1 - x))
    weight = mask[crop][..., None]
    region = frame[y0:y1, x0:x1, :3].astype(np.float32)
    blended = region + (face[crop].astype(np.float32) - region) * weight
    frame[y0:y1, x0:x1, :3] = np.rint(blended).astype(np.uint8)
