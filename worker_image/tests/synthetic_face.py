"""A painted, synthetic portrait with known landmarks: the second face the lite tests look at.

The astronaut smiles with her upper teeth showing; this face covers the other common cases:
closed lips (the renderer must draw teeth and an interior itself) and a grin showing upper
and lower teeth with a dark gap between them (the lower teeth must travel with the jaw). It is
drawn from signed distances with soft edges, a little seeded noise for skin texture, and a
simple light from the upper left, so nothing is downloaded.
"""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from avatar_worker.render.portrait import FaceGeometry, Portrait

SIZE = 512
EYES = ((206.0, 228.0), (306.0, 228.0))
NOSE = (256.0, 282.0)
CORNERS = ((218.0, 330.0), (294.0, 330.0))
BOX = (146.0, 150.0, 220.0, 250.0)
SKIN = np.array([226.0, 184.0, 158.0])
LIP = np.array([184.0, 96.0, 94.0])
TEETH = np.array([238.0, 232.0, 216.0])

F64 = npt.NDArray[np.float64]


def _edge(distance: F64, softness: float = 1.0) -> F64:
    """Coverage 0..1 of a shape from its signed distance (negative inside)."""
    out: F64 = np.clip(0.5 - distance / softness, 0.0, 1.0)
    return out


def _paint(image: F64, coverage: F64, colour: F64) -> None:
    image += (colour - image) * coverage[..., None]


def _ellipse(xs: F64, ys: F64, cx: float, cy: float, rx: float, ry: float) -> F64:
    """Approximate signed distance to an ellipse, in pixels."""
    out: F64 = (np.sqrt(((xs - cx) / rx) ** 2 + ((ys - cy) / ry) ** 2) - 1.0) * min(rx, ry)
    return out


def synthetic_face(*, teeth: bool = False, seed: int = 5) -> npt.NDArray[np.uint8]:
    """(512, 512, 3) RGB: a frontal face, lips closed, or grinning with both rows of teeth."""
    ys, xs = np.mgrid[0:SIZE, 0:SIZE].astype(np.float64)
    image = np.empty((SIZE, SIZE, 3))
    image[...] = np.array([150.0, 160.0, 180.0]) * (0.85 + 0.3 * ys / SIZE)[..., None]
    # Neck and shoulders, then the head, shaded as a sphere lit from the upper left.
    _paint(image, _edge(np.abs(xs - 256) - 62) * (ys > 330), SKIN * 0.82)
    _paint(image, _edge(_ellipse(xs, ys, 256, 560, 230, 120)), np.array([60.0, 70.0, 95.0]))
    head = _edge(_ellipse(xs, ys, 256, 262, 112, 150), 2.0)
    nx = (xs - 256) / 112
    ny = (ys - 262) / 150
    light = np.clip(0.78 + 0.22 * np.sqrt(np.clip(1 - nx**2 - ny**2, 0, 1)) - 0.06 * nx, 0, 1.1)
    skin = SKIN * light[..., None]
    image += (skin - image) * head[..., None]
    # Hair: a cap over the top of the head.
    hair = _edge(_ellipse(xs, ys, 256, 200, 126, 110), 2.0) * (ys < 172 + 0.2 * np.abs(xs - 256))
    _paint(image, hair, np.array([92.0, 62.0, 40.0]))
    for ex, ey in EYES:
        _eye(image, xs, ys, ex, ey)
    # Nose: a soft shadow down the side, nostrils at the base.
    _paint(image, 0.18 * _edge(np.abs(xs - 268) - 3, 6.0) * (ys > 240) * (ys < 280), skin * 0.7)
    for side in (-1, 1):
        nostril = _edge(_ellipse(xs, ys, NOSE[0] + side * 11, NOSE[1] + 4, 6, 3.2))
        _paint(image, nostril * 0.8, np.array([110.0, 66.0, 56.0]))
    _mouth(image, xs, ys, teeth=teeth)
    rng = np.random.default_rng(seed)
    image += rng.normal(0.0, 3.0, image.shape) * head[..., None]
    return np.clip(image + 0.5, 0, 255).astype(np.uint8)


def _eye(image: F64, xs: F64, ys: F64, ex: float, ey: float) -> None:
    half_w, up, down = 25.0, 11.0, 8.0
    a = np.clip((xs - ex) / half_w, -1, 1)
    top = ey - up * np.sqrt(1 - a * a)
    bottom = ey + down * np.sqrt(1 - a * a)
    inside = (np.abs(xs - ex) < half_w) * _edge(top - ys) * _edge(ys - bottom)
    _paint(image, inside, np.array([232.0, 228.0, 222.0]))
    iris = _edge(np.hypot(xs - ex, ys - ey) - 10.0) * inside
    _paint(image, iris, np.array([96.0, 64.0, 42.0]))
    _paint(image, _edge(np.hypot(xs - ex, ys - ey) - 4.0) * inside, np.array([18.0, 14.0, 14.0]))
    _paint(image, _edge(np.hypot(xs - ex + 3, ys - ey + 3) - 1.6) * inside, np.array([250.0] * 3))
    lashes = (np.abs(xs - ex) < half_w + 2) * _edge(np.abs(ys - top + 1.0) - 1.4)
    _paint(image, lashes, np.array([40.0, 28.0, 24.0]))
    crease = (np.abs(xs - ex) < half_w - 4) * _edge(np.abs(ys - top + 9.0) - 0.8, 2.0)
    _paint(image, 0.35 * crease, np.array([150.0, 110.0, 92.0]))
    brow = (np.abs(xs - ex) < 30) * _edge(np.abs(ys - (ey - 30 + 0.004 * (xs - ex) ** 2)) - 3.0)
    _paint(image, brow, np.array([88.0, 60.0, 42.0]))


def _mouth(image: F64, xs: F64, ys: F64, *, teeth: bool) -> None:
    (lx, ly), (rx, _) = CORNERS
    mid, half = (lx + rx) / 2, (rx - lx) / 2
    a = np.clip((xs - mid) / half, -1, 1)
    inside = np.abs(xs - mid) < half
    bump = 1 - a * a
    if not teeth:
        seam = ly + 3.0 * bump
        upper = _edge(seam - 9.0 * bump + 2.0 * np.exp(-((a * 4) ** 2)) - ys) * _edge(ys - seam)
        lower = _edge(ys - seam - 13.0 * bump) * _edge(seam - ys)
        _paint(image, upper * inside, LIP * 0.92)
        _paint(image, lower * inside, LIP * 1.05)
        _paint(
            image, 0.5 * lower * inside * _edge(np.abs(ys - seam - 8 * bump) - 1.5, 3.0), LIP * 1.25
        )
        _paint(image, inside * _edge(np.abs(ys - seam) - 0.7), LIP * 0.45)
        return
    # Grin: the upper lip, upper teeth, a dark gap, lower teeth and the lower lip.
    upper_lip = ly - 2.0 * bump
    gap = ly + 10.0 * bump
    lower_lip = ly + 17.0 * bump
    opening = inside * _edge(upper_lip - ys) * _edge(ys - lower_lip)
    _paint(image, opening, np.array([70.0, 26.0, 24.0]))
    upper_teeth = opening * _edge(ys - (gap - 1.0)) * (np.abs(a) < 0.85)
    lower_teeth = opening * _edge((gap + 1.5) - ys) * (np.abs(a) < 0.7)
    shade = (1 - 0.45 * a * a)[..., None]
    image += (TEETH * shade - image) * upper_teeth[..., None]
    image += (TEETH * 0.88 * shade - image) * lower_teeth[..., None]
    _paint(
        image, inside * _edge(ys - upper_lip) * _edge(upper_lip - 8.0 * bump - 2 - ys), LIP * 0.92
    )
    _paint(image, inside * _edge(lower_lip - ys) * _edge(ys - lower_lip - 12.0 * bump), LIP * 1.05)


def synthetic_portrait(*, teeth: bool = False) -> Portrait:
    landmarks = (*EYES, NOSE, *CORNERS)
    return Portrait(
        image=synthetic_face(teeth=teeth), face=FaceGeometry(box=BOX, landmarks=landmarks)
    )
