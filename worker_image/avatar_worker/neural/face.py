"""The face crop the model sees and the mask its output is pasted through (pure numpy).

The crop is the square around the Avatar's detected face box (MuseTalk's crop is the detector's
box too, with a little extra room below the chin), kept inside the frame. The model regenerates
the lower half of that square; the paste mask is the part of the lower half that moves when a
person talks: an ellipse from just below the nose to the chin, a little wider than the mouth,
feathered inwards so its edge blends into the lite frame (1 inside, 0 on and outside the edge).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_worker.render.portrait import FaceGeometry

F32 = npt.NDArray[np.float32]
CHIN_MARGIN = 0.1  # extra room below the face box, as a share of its height
FEATHER = 0.08  # width of the mask's soft edge, as a share of the crop


@dataclass(frozen=True)
class FaceCrop:
    x: int  # top-left corner in the frame, pixels
    y: int
    side: int  # square, pixels of the frame
    mask: F32  # (side, side) paste weights in [0, 1]


def crop_box(face: FaceGeometry, frame_size: tuple[int, int]) -> tuple[int, int, int]:
    """(x, y, side) of the square face crop, inside a frame of `frame_size` (width, height)."""
    width, height = frame_size
    bx, by, bw, bh = face.box
    bottom = by + bh * (1 + CHIN_MARGIN)
    side = min(round(max(bw, bottom - by)), width, height)
    cx, cy = bx + bw / 2, (by + bottom) / 2
    x = min(max(round(cx - side / 2), 0), width - side)
    y = min(max(round(cy - side / 2), 0), height - side)
    return x, y, side


def paste_mask(face: FaceGeometry, x: int, y: int, side: int) -> F32:
    """Feathered mouth-and-jaw ellipse in crop pixels, zero in the crop's upper half."""
    (mx, my), (_, ny) = face.mouth_center, face.nose
    _, by, _, bh = face.box
    chin = min(by + bh * (1 + CHIN_MARGIN / 2), y + side)
    top = max(ny + 0.25 * (my - ny), y + side / 2)  # below the nose, never above the midline
    half_w = max(0.75 * face.mouth_width, 0.35 * face.eye_distance)
    half_h = max((chin - top) / 2, 1.0)
    cx, cy = mx - x, (top + chin) / 2 - y
    ys, xs = np.mgrid[0:side, 0:side].astype(np.float32) + 0.5
    r = np.sqrt(((xs - cx) / half_w) ** 2 + ((ys - cy) / half_h) ** 2)
    edge = max(FEATHER * side / max(half_w, half_h), 1e-3)
    t = np.clip((1.0 - r) / edge, 0.0, 1.0)
    mask = t * t * (3.0 - 2.0 * t)
    mask[: (side + 1) // 2] = 0.0  # the model regenerates only the lower half
    out: F32 = mask.astype(np.float32)
    return out


def face_crop(face: FaceGeometry, frame_size: tuple[int, int]) -> FaceCrop:
    x, y, side = crop_box(face, frame_size)
    return FaceCrop(x=x, y=y, side=side, mask=paste_mask(face, x, y, side))
