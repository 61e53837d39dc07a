"""The lite mouth: the lower lip and jaw move down from the lips' own seam, and the gap that
opens between the lips is filled with a shaded mouth interior.

Set-up finds the *seam*, the line where the upper lip (or, in a smile, the upper teeth) meets
the lower lip: a parabola through both mouth corners whose depth at the middle is fitted to
the portrait (a dark line between closed lips, or the step from bright teeth down to the lower
lip). Everything above the seam stays where it is, so a smile's upper teeth stay under the
upper lip; everything below it (lower lip, lower teeth, chin) is carried down by the jaw. The
gap between the two is the only thing drawn: an interior whose colours are taken from the
face's own skin tone (a dark warm red-brown, never black), upper teeth under the upper lip
when the portrait shows none, and a tongue when the mouth opens wide. Edges are anti-aliased
and nothing is drawn at all while the mouth is closed.

All coordinates are the fitted output frame's pixels. Per frame, `MouthRig.warp` maps the head
coordinates of every pixel of the jaw box to source coordinates and the interior's coverage,
and `MouthRig.paint` composites the interior into the warped pixels.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_worker.render.fields import F32, bilinear_float, box_blur, luma, smoothstep
from avatar_worker.render.portrait import Point
from avatar_worker.render.visemes import MouthShape

# Jaw travel at full opening, in units of the distance between the eyes.
JAW_DROP = 0.24
# Horizontal stretch of the mouth at full spread (negative width rounds the lips).
SPREAD = 0.18
# Shapes of seam tried: a parabola, and flatter in the middle (see `Seam`).
FLATNESS = (2.0, 3.0, 4.0)
# How far the per-column correction of the seam may move it, in mouth widths.
DETAIL_REACH = 0.05
# Range of seam depths tried at the middle of the mouth, in mouth widths (below the corners).
SAG_RANGE = (-0.06, 0.28)
# Weight of what lies just above a seam candidate (teeth: +, skin: -), in skin luma.
CONTEXT_WEIGHT = 0.35
# Interior colours as fractions of the skin tone (per channel): red-brown, never black.
INTERIOR_DEEP = np.array([0.33, 0.20, 0.17], dtype=np.float32)
INTERIOR_LIT = np.array([0.55, 0.30, 0.27], dtype=np.float32)
TONGUE = np.array([0.74, 0.40, 0.38], dtype=np.float32)
# Teeth drawn from the skin tone when the portrait shows none: a warm off-white.
TEETH_FROM_SKIN = np.array([1.02, 0.98, 0.88], dtype=np.float32)
# How much upper tooth shows under the upper lip, in mouth widths.
UPPER_TEETH = 0.09


@dataclass(frozen=True)
class Seam:
    """A curve through both mouth corners, `sag` pixels below their line at the middle.

    Its depth across the mouth is sag * (1 - |a|^flatness), `a` running from -1 at one corner to
    +1 at the other: flatness 2 is a parabola, higher values keep the middle flat and curve up
    only near the corners (a smile's row of front teeth). `detail` adds small per-column
    corrections, sampled evenly over `a` from -1 to +1 (none when empty).
    """

    left: Point
    right: Point
    sag: float
    flatness: float = 2.0
    detail: tuple[float, ...] = ()

    @property
    def middle(self) -> float:
        return (self.left[0] + self.right[0]) / 2

    @property
    def half_width(self) -> float:
        return max(1.0, (self.right[0] - self.left[0]) / 2)

    def across(self, x: F32) -> F32:
        """-1 at the left corner, 0 in the middle, +1 at the right corner."""
        out: F32 = ((x - self.middle) / self.half_width).astype(np.float32)
        return out

    def y_at(self, x: F32) -> F32:
        (lx, ly), (rx, ry) = self.left, self.right
        line = ly + (ry - ly) * (x - lx) / max(1.0, rx - lx)
        a = self.across(x)
        depth = np.clip(1.0 - np.abs(a) ** self.flatness, 0.0, None)
        y = line + self.sag * depth
        if self.detail:
            y = y + np.interp(a, np.linspace(-1.0, 1.0, len(self.detail)), self.detail)
        out: F32 = y.astype(np.float32)
        return out


def saturation(rgb: F32) -> F32:
    """(max - min) / max of RGB values in the last axis: 0 grey .. 1 pure colour."""
    top = rgb.max(axis=-1)
    out: F32 = ((top - rgb.min(axis=-1)) / np.maximum(top, 1.0)).astype(np.float32)
    return out


def teeth_likeness(rgb: F32, skin: F32) -> F32:
    """0..1: brighter than the skin and clearly less saturated than it, like teeth."""
    brighter = smoothstep((luma(rgb) / max(1.0, float(luma(skin))) - 0.92) / 0.15)
    skin_saturation = max(0.05, float(saturation(skin)))
    paler = smoothstep((0.8 * skin_saturation - saturation(rgb)) / (0.3 * skin_saturation))
    out: F32 = (brighter * paler).astype(np.float32)
    return out


def skin_likeness(rgb: F32, skin: F32) -> F32:
    """0..1: how close to the skin tone (lips differ in hue, teeth in saturation)."""
    distance = np.linalg.norm(rgb - skin, axis=-1) / (0.12 * max(1.0, float(luma(skin))))
    out: F32 = np.exp(-(distance**2)).astype(np.float32)
    return out


def seam_score(
    rgb: npt.NDArray[np.uint8], grey: F32, xs: F32, ys: F32, step: float, skin: F32
) -> F32:
    """How much the curve through (xs, ys) looks like a seam at each point, in luma units.

    A dark line (closed lips, the gap between upper and lower teeth) scores by its depth; a
    step from bright teeth down to the lower lip scores by its height just below the step,
    where the lower lip starts; the lower lip's own lower edge (dark to bright) scores nothing.
    What lies just above the curve counts too: teeth add a bonus (in a smile, the dark band of
    the upper lip between skin and teeth must not win over the teeth's lower edge) and plain
    skin a penalty (the upper lip's top edge is not the seam, whatever its contrast).
    """
    image = grey[..., None]
    above = bilinear_float(image, xs, ys - step)[..., 0]
    at = bilinear_float(image, xs, ys)[..., 0]
    below = bilinear_float(image, xs, ys + step)[..., 0]
    valley = (above + below) / 2 - at
    drop = above - below
    over = bilinear_float(rgb, xs, ys - 1.5 * step)
    context = teeth_likeness(over, skin) - skin_likeness(over, skin)
    out: F32 = (valley + 0.5 * drop + CONTEXT_WEIGHT * float(luma(skin)) * context).astype(
        np.float32
    )
    return out


def fit_seam(rgb: npt.NDArray[np.uint8], left: Point, right: Point, skin: F32) -> Seam:
    """The seam of this portrait's mouth (see `seam_score`).

    First the curve's depth and shape, by trying every one (robust to noise, since the whole
    curve scores); then per column, a small correction within a few pixels of it, smoothed.
    """
    width = math.hypot(right[0] - left[0], right[1] - left[1])
    grey = box_blur(luma(rgb), 1 if width > 30 else 0)
    step = max(1.0, 0.025 * width)
    half = max(1.0, (right[0] - left[0]) / 2)
    across = np.linspace(-0.85, 0.85, max(9, round(1.7 * half)), dtype=np.float32)
    xs = ((left[0] + right[0]) / 2 + half * across).astype(np.float32)
    sags = np.arange(SAG_RANGE[0] * width, SAG_RANGE[1] * width, 0.25)
    candidates = [Seam(left, right, float(s), f) for f in FLATNESS for s in sags]
    # Every candidate scored in one call (a row each): a call per candidate cost most of an
    # avatar's preparation in numpy's per-call overhead.
    curves = np.stack([c.y_at(xs) for c in candidates])
    scores = seam_score(rgb, grey, np.broadcast_to(xs, curves.shape), curves, step, skin)
    seam = candidates[int(np.argmax(scores.mean(axis=1)))]
    reach = max(1.5, DETAIL_REACH * width)
    offsets = np.arange(-reach, reach + 0.125, 0.25, dtype=np.float32)
    shifted = seam.y_at(xs)[None, :] + offsets[:, None]
    table = seam_score(rgb, grey, np.broadcast_to(xs, shifted.shape), shifted, step, skin)
    best = offsets[np.argmax(table, axis=0)]
    radius = max(1, round(0.1 * len(xs)))
    kernel = np.full(2 * radius + 1, 1.0 / (2 * radius + 1))
    smooth = np.convolve(np.pad(best, radius, mode="edge"), kernel, mode="valid")
    # No correction at the corners themselves: they are landmarks.
    detail = np.concatenate([[0.0], smooth * (1.0 - np.abs(across) ** 4), [0.0]])
    return Seam(left, right, seam.sag, seam.flatness, tuple(float(d) for d in detail))


@dataclass(frozen=True)
class MouthColours:
    deep: F32  # the back of the mouth
    lit: F32  # the interior just inside the lips
    tongue: F32
    teeth: F32
    shows_teeth: float  # 0..1: the portrait already shows upper teeth above the seam


def mouth_colours(rgb: npt.NDArray[np.uint8], seam: Seam, skin: F32) -> MouthColours:
    """Interior colours relative to the skin tone; teeth sampled when the smile shows them."""
    width = 2 * seam.half_width
    xs = (seam.middle + seam.half_width * np.linspace(-0.4, 0.4, 9)).astype(np.float32)
    rows = np.linspace(0.14 * width, 0.03 * width, 5, dtype=np.float32)
    px = np.broadcast_to(xs[None, :], (len(rows), len(xs))).astype(np.float32)
    py = (seam.y_at(xs)[None, :] - rows[:, None]).astype(np.float32)
    band = bilinear_float(rgb, px, py).reshape(-1, 3)
    mean = band.mean(axis=0)
    shows = float(smoothstep((float(teeth_likeness(band, skin).mean()) - 0.3) / 0.4))
    made = np.minimum(float(luma(skin)) * TEETH_FROM_SKIN, 235.0)
    teeth = (shows * mean + (1.0 - shows) * made).astype(np.float32)
    return MouthColours(
        deep=(skin * INTERIOR_DEEP).astype(np.float32),
        lit=(skin * INTERIOR_LIT).astype(np.float32),
        tongue=(skin * TONGUE).astype(np.float32),
        teeth=teeth,
        shows_teeth=shows,
    )


@dataclass(frozen=True)
class MouthWarp:
    """One frame's mapping of the jaw box: source coordinates and the interior to paint."""

    src_x: F32
    src_y: F32
    cover: F32  # 0..1 coverage of the interior
    depth: F32  # distance below the seam, pixels
    gap: F32  # height of the opening in this column, pixels
    across: F32  # -1..1 from corner to corner


class MouthRig:
    """The jaw box's precomputed fields and the per-frame mouth warp and interior."""

    def __init__(
        self,
        rgb: npt.NDArray[np.uint8],
        left: Point,
        right: Point,
        skin: F32,
        eye_distance: float,
        bounds: tuple[int, int, int, int],
        chin_y: float,
    ) -> None:
        self.seam = fit_seam(rgb, left, right, skin)
        self.colours = mouth_colours(rgb, self.seam, skin)
        ied = eye_distance
        self._ied = ied
        self._width = 2 * self.seam.half_width
        mcx = self.seam.middle
        mcy = (left[1] + right[1]) / 2 + 0.5 * self.seam.sag
        fall = 0.6 * ied
        bx0, by0, bx1, by1 = bounds
        # Inside `bounds` (the head region), and empty if the mouth lies outside it.
        x0 = min(bx1, max(bx0, int(mcx - 1.3 * ied)))
        x1 = max(x0, min(bx1, math.ceil(mcx + 1.3 * ied)))
        y0 = min(by1, max(by0, int(min(left[1], right[1]) - 0.9 * self._width)))
        y1 = max(y0, min(by1, math.ceil(chin_y + fall)))
        self.box = (x0, y0, x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        # The chin moves with the jaw; the neck below it does not.
        self._fade = smoothstep((chin_y + fall - ys) / fall)
        self._jaw = np.exp(-(((xs - mcx) / (0.8 * ied)) ** 4)).astype(np.float32)
        w = self._width
        g = np.exp(-(((xs - mcx) / (0.7 * w)) ** 2) - ((ys - mcy) / (0.45 * w)) ** 2)
        self._spread = ((xs - mcx) * g).astype(np.float32)

    def warp(self, qx: F32, qy: F32, mouth: MouthShape) -> MouthWarp:
        """Source coordinates for the jaw box whose head coordinates are (qx, qy)."""
        opening = min(1.0, max(0.0, mouth.open))
        drop = opening * JAW_DROP * self._ied
        stretch = SPREAD * mouth.width * min(1.0, 3.0 * opening)
        src_x = (qx - stretch * self._spread).astype(np.float32)
        seam = self.seam
        across = seam.across(src_x)
        bump = np.clip(1.0 - across * across, 0.0, None)
        gap = (drop * bump**0.75).astype(np.float32)
        depth = (qy - seam.y_at(src_x)).astype(np.float32)
        # The lower lip's top edge shows the source just below the seam, not the seam itself.
        margin = np.minimum(0.5 * gap, max(0.6, 0.02 * self._width))
        lip = gap - margin
        t = smoothstep((depth - gap) / (0.5 * self._ied))
        lower = (lip * (1.0 - t) + drop * self._jaw * t) * self._fade
        # Upper half of the gap: the upper side's colours (for the anti-aliased edge); lower
        # half and below: the lower side, carried down by the jaw.
        upper_side = np.minimum(qy, qy - depth)
        lower_side = np.maximum(qy - lower, qy - depth + 0.5)
        src_y = np.where(depth < 0.5 * gap, np.where(depth < 0.0, qy, upper_side), lower_side)
        # A crisp upper edge (lip or teeth over the dark) and a softer lower one (the wet lip).
        edge = np.minimum(depth + 0.5, (gap - depth) / 1.5 + 0.5)
        cover = (np.clip(edge, 0.0, 1.0) * np.minimum(1.0, gap)).astype(np.float32)
        return MouthWarp(
            src_x=src_x,
            src_y=src_y.astype(np.float32),
            cover=cover,
            depth=depth,
            gap=gap,
            across=across,
        )

    def paint(self, pixels: npt.NDArray[np.uint8], warp: MouthWarp) -> None:
        """Composite the interior into the jaw box's warped RGB pixels, in place."""
        rows, cols = np.nonzero(warp.cover > 0.0)
        if rows.size == 0:
            return
        region = (slice(rows.min(), rows.max() + 1), slice(cols.min(), cols.max() + 1))
        cover = warp.cover[region]
        depth = warp.depth[region]
        gap = np.maximum(warp.gap[region], 1e-3)
        across = np.clip(warp.across[region], -1.0, 1.0)
        fraction = np.clip(depth / gap, 0.0, 1.0)
        colours = self.colours
        # The cavity: deepest just under the upper lip and teeth (their shadow) and towards the
        # corners (the cheeks shade them), a little light on the lower lip's wet inner side.
        light = 0.55 * smoothstep((fraction - 0.45) / 0.55) * (1.0 - across * across)
        colour = colours.deep + (colours.lit - colours.deep) * light[..., None]
        # The tongue: a soft, low mound, half hidden by the lower lip, once the mouth is wide.
        wide = float(smoothstep((float(gap.max()) / self._ied - 0.08) / 0.12))
        mound = smoothstep((fraction - (1.0 - 0.45 * (1.0 - (across / 0.75) ** 2))) / 0.3)
        tongue = 0.85 * wide * mound * (np.abs(across) < 0.75)
        colour += (colours.tongue * (0.7 + 0.3 * fraction[..., None]) - colour) * tongue[..., None]
        # Upper teeth under the upper lip, unless the portrait already shows them above it.
        shown = UPPER_TEETH * self._width * (1.0 - colours.shows_teeth)
        if shown > 0.5:
            height = np.minimum(shown, 0.5 * gap)
            teeth = np.clip(height - depth + 0.5, 0.0, 1.0) * smoothstep(
                (1.0 - np.abs(across)) / 0.45
            )
            shade = (1.0 - 0.5 * across * across) * (0.75 + 0.25 * smoothstep(depth / 2.0))
            colour += (colours.teeth * shade[..., None] - colour) * teeth[..., None]
        target = pixels[region].astype(np.float32)
        target += (colour - target) * cover[..., None]
        pixels[region] = (target + 0.5).astype(np.uint8)
