"""The lite eyelids: the lid's own skin slides down over the eye, edged with a dark lash line,
feathered into the face around it.

The upper lid's edge rests on an arc above the eye landmark; closing moves it to a shallow arc
below the landmark, where the closed lash line lies. The lid that covers the eye takes its
colour per column from the real lid skin just above the open lid's edge (median, smoothed
across, so it joins the real lid where it fades in at the top), turning halfway towards the
lower lid's skin near the closed lash line, with the fine texture of the skin below the eye
laid over it (a flat colour reads as a patch). It is shaded slightly darker towards its edge
and the eye's corners (the lid curves away there), and edged with lashes in the darkest colour
found around the eye. Only the eye's box is touched; a closure of 0 leaves the portrait as it
is.
"""

from __future__ import annotations

import math

import numpy as np
import numpy.typing as npt

from avatar_worker.render.fields import F32, box_blur, luma, smoothstep
from avatar_worker.render.portrait import Point

# Eye geometry in units of the distance between the eyes.
HALF_WIDTH = 0.27  # half the width of the eye opening
LID_RISE = 0.13  # the open upper lid's edge, above the eye landmark at the middle
LID_REST = 0.08  # the closed lid's lash line, below the eye landmark at the middle
# The lid skin: between these heights above the open lid's edge (clear of its lashes). The
# lid layer starts at the upper one, fading in, so it joins the real lid there.
LID_SKIN = (0.08, 0.025)
LASH_WIDTH = 0.018  # thickness of the lash line
LASH_OPACITY = 0.85
TEXTURE_LIMIT = 20.0  # luma; keeps a mole or a lash below the eye from printing on the lid
LID_SHADE = 0.08  # the lid darkens by this much towards its edge, where it curves away


class Eyelid:
    def __init__(
        self, rgb: npt.NDArray[np.uint8], eye: Point, eye_distance: float, skin: F32
    ) -> None:
        height, width = rgb.shape[:2]
        ex, ey = eye
        ied = eye_distance
        self._ied = ied
        ax = HALF_WIDTH * ied
        x0 = max(0, int(ex - 1.1 * ax))
        x1 = min(width, math.ceil(ex + 1.1 * ax) + 1)
        y0 = max(0, int(ey - (LID_RISE + LID_SKIN[0] + 0.02) * ied))
        y1 = min(height, math.ceil(ey + (LID_REST + 2 * LASH_WIDTH) * ied) + 2)
        self.box = (x0, y0, x1, y1)
        # An eye the fitted frame cropped away (or nearly) has no lid to draw.
        self.visible = x1 - x0 >= 3 and y1 - y0 >= 3
        if not self.visible:
            return
        xs = np.arange(x0, x1, dtype=np.float32)
        a = np.clip((xs - ex) / ax, -1.0, 1.0)
        self._top = (ey - LID_RISE * ied * np.sqrt(1.0 - a * a)).astype(np.float32)
        self._rest = (ey + LID_REST * ied * np.sqrt(1.0 - a * a)).astype(np.float32)
        # The lid narrows to nothing at the corners of the eye.
        self._side = smoothstep((1.0 - np.abs((xs - ex) / ax)) / 0.35)
        self._ys = np.arange(y0, y1, dtype=np.float32)[:, None]
        top_edge = ey - LID_RISE * ied
        self.skin = self._band(
            rgb, top_edge - LID_SKIN[0] * ied, top_edge - LID_SKIN[1] * ied, skin
        )
        rest = ey + LID_REST * ied
        below = self._band(rgb, rest + 0.05 * ied, rest + 0.1 * ied, skin)
        self.lash = self._sample_lash(rgb)
        # The lid's colour where it covers the eye, static: the lid is smooth, so sliding its
        # texture down would not show, and a static field costs nothing per frame.
        start = self._top - LID_SKIN[0] * ied
        fraction = np.clip((self._ys - start) / np.maximum(self._rest - start, 1.0), 0.0, 1.0)
        field = self.skin[None] + 0.5 * (below - self.skin)[None] * fraction[..., None]
        self._lid = (field + self._texture(rgb)[..., None]).astype(np.float32)

    def _band(self, rgb: npt.NDArray[np.uint8], top: float, bottom: float, face_skin: F32) -> F32:
        """Skin colour per column of the box (x, 3): the median of rows `top`..`bottom`."""
        height = rgb.shape[0]
        b0 = min(height - 2, max(0, int(top)))
        b1 = min(height, max(b0 + 2, math.ceil(bottom)))
        x0, _, x1, _ = self.box
        band = rgb[b0:b1, x0:x1].astype(np.float32)
        per_column = smooth_along(np.median(band, axis=0), max(1, round(0.08 * self._ied)))
        # A band that caught the brow or lashes is much darker than skin: lean on the face's
        # skin tone there instead.
        limit = 0.8 * float(luma(face_skin))
        darkness = np.clip((limit - luma(per_column)) / (0.2 * limit), 0.0, 1.0)
        out: F32 = (per_column + (face_skin - per_column) * darkness[:, None]).astype(np.float32)
        return out

    def _texture(self, rgb: npt.NDArray[np.uint8]) -> F32:
        """Fine luma detail (pores, freckles) of the skin just below the eye's box, or none."""
        x0, y0, x1, y1 = self.box
        h = y1 - y0
        below = rgb[y1 + h // 2 : y1 + h // 2 + h, x0:x1]
        if below.shape[0] < h:
            return np.zeros((h, x1 - x0), dtype=np.float32)
        grey = luma(below)
        detail = grey - box_blur(grey, max(1, round(0.03 * self._ied)))
        out: F32 = np.clip(detail, -TEXTURE_LIMIT, TEXTURE_LIMIT).astype(np.float32)
        return out

    def _sample_lash(self, rgb: npt.NDArray[np.uint8]) -> F32:
        """The darkest twentieth of the eye's box: lashes, pupil, lid crease."""
        x0, y0, x1, y1 = self.box
        pixels = rgb[y0:y1, x0:x1].reshape(-1, 3).astype(np.float32)
        grey = luma(pixels)
        dark = pixels[grey <= np.percentile(grey, 5)]
        out: F32 = dark.mean(axis=0).astype(np.float32)
        return out

    def close(self, image: npt.NDArray[np.uint8], closure: float) -> None:
        """Lower the lid by `closure` (0 open .. 1 closed), in place on the RGB(A) `image`."""
        c = min(1.0, max(0.0, closure))
        if c <= 0.0 or not self.visible:
            return
        x0, y0, x1, y1 = self.box
        ied = self._ied
        ys = self._ys
        lid = self._top + c * (self._rest - self._top)  # the lid's edge, per column
        feather = LID_SKIN[0] * ied
        start = self._top - feather
        cover = smoothstep((ys - start) / feather) * np.clip(lid - ys + 0.5, 0.0, 1.0) * self._side
        across = 1.0 - self._side
        shade = (1.0 - LID_SHADE * smoothstep((ys - (lid - 0.12 * ied)) / (0.12 * ied))) * (
            1.0 - LID_SHADE * across
        )
        lid_colour = self._lid * shade[..., None]
        # Lashes hang just below the lid's edge, thickest in the middle of the eye.
        width = max(0.8, LASH_WIDTH * ied)
        lash = (
            LASH_OPACITY
            * np.exp(-(((ys - lid - 0.35 * width) / width) ** 2))
            * self._side**0.5
            * min(1.0, 3.0 * c)
        )
        patch = image[y0:y1, x0:x1, :3].astype(np.float32)
        patch += (lid_colour - patch) * cover[..., None]
        patch += (self.lash - patch) * lash[..., None]
        image[y0:y1, x0:x1, :3] = (patch + 0.5).astype(np.uint8)


def smooth_along(values: F32, radius: int) -> F32:
    """Moving average of the rows of `values` (n, channels), edges held."""
    padded = np.pad(values, ((radius, radius), (0, 0)), mode="edge")
    kernel = np.full(2 * radius + 1, 1.0 / (2 * radius + 1), dtype=np.float32)
    columns = [np.convolve(padded[:, c], kernel, mode="valid") for c in range(values.shape[1])]
    out: F32 = np.stack(columns, axis=1).astype(np.float32)
    return out
