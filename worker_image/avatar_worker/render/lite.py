"""`lite` tier: one portrait animated on the CPU with numpy.

Set-up (once): the portrait is fitted to the output frame, and displacement *basis fields* are
built over the head region from the face landmarks: jaw drop, lip spread, eyelids, and a rigid
head motion (shift and roll about the neck). Per frame, the displacement is a weighted sum of
those fields (weights from the mouth shape, the blink schedule and a slow idle sway), applied as
one backward bilinear warp of the head region; the opened mouth gets a dark interior drawn in.
The cost scales with the head region, not the frame: a few milliseconds at 640x480 on one core.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_worker.render.base import RGBA_CHANNELS, FrameByFrameRenderer, FrameRequest, Frames
from avatar_worker.render.portrait import Portrait, fit
from avatar_worker.render.visemes import CLOSED, MouthShape

F32 = npt.NDArray[np.float32]

# Motion amplitudes, in units of the distance between the eyes.
JAW_DROP = 0.30  # jaw travel at full opening
EYE_HALF_SIZE = (0.34, 0.17)  # half width and half height of the eye opening
LASH_DARKEN = 0.45  # how much darker the lid edge is than the skin
SPREAD = 0.18  # horizontal stretch of the mouth at full spread
SWAY_SHIFT = (0.035, 0.02)  # idle head shift, x and y
SWAY_ROLL = 0.015  # idle head roll, radians
NOD = 0.04  # extra downward head motion while the jaw is open
MOUTH_INTERIOR = np.array([58.0, 22.0, 26.0], dtype=np.float32)
MOUTH_OPACITY = 0.9

# Blink timing, seconds.
BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN = 0.07, 0.04, 0.12
BLINK_GAP = (2.2, 5.5)


def smoothstep(x: F32) -> F32:
    x = np.clip(x, 0.0, 1.0)
    return (x * x * (3.0 - 2.0 * x)).astype(np.float32)


def blink_shape(since_start: float) -> float:
    """Lid closure 0..1 at `since_start` seconds into a blink."""
    t = since_start
    if t < 0.0:
        return 0.0
    if t < BLINK_CLOSE:
        x = t / BLINK_CLOSE
        return x * x
    t -= BLINK_CLOSE
    if t < BLINK_HOLD:
        return 1.0
    t -= BLINK_HOLD
    if t < BLINK_OPEN:
        x = 1.0 - t / BLINK_OPEN
        return x * x
    return 0.0


class BlinkSchedule:
    """Blinks at pseudo-random (seeded, so reproducible) intervals of 2.2 to 5.5 seconds."""

    def __init__(self, seed: int = 7, first_at: float = 1.5) -> None:
        self._rng = random.Random(seed)
        self._starts = [first_at]

    def amount(self, t: float) -> float:
        while self._starts[-1] <= t:
            self._starts.append(self._starts[-1] + self._rng.uniform(*BLINK_GAP))
        # The blink in progress, if any, is the last start at or before t.
        for start in reversed(self._starts):
            if start <= t:
                return blink_shape(t - start)
        return 0.0


@dataclass(frozen=True)
class Pose:
    mouth: MouthShape = CLOSED
    blink: float = 0.0  # 0 open .. 1 closed
    shift: tuple[float, float] = (0.0, 0.0)  # pixels
    roll: float = 0.0  # radians, about the neck


def idle_sway(t: float, eye_distance: float, opening: float) -> tuple[tuple[float, float], float]:
    """Slow, aperiodic-looking head shift and roll: sums of incommensurate sines."""
    tau = 2.0 * math.pi
    sx = SWAY_SHIFT[0] * eye_distance * math.sin(tau * 0.09 * t + 0.4)
    sy = (
        SWAY_SHIFT[1]
        * eye_distance
        * (0.6 * math.sin(tau * 0.17 * t) + 0.4 * math.sin(tau * 0.07 * t + 2.1))
    )
    sy += NOD * eye_distance * opening
    roll = SWAY_ROLL * (0.6 * math.sin(tau * 0.13 * t) + 0.4 * math.sin(tau * 0.31 * t + 1.3))
    return (sx, sy), roll


class LiteRenderer(FrameByFrameRenderer):
    def __init__(self, portrait: Portrait, size: tuple[int, int], *, seed: int = 7) -> None:
        super().__init__(size)
        fitted = fit(portrait, size)
        self.face = fitted.face  # geometry in output coordinates (tests read it)
        self._rgb = np.ascontiguousarray(fitted.image)
        self._base = np.empty((self._height, self._width, RGBA_CHANNELS), dtype=np.uint8)
        self._base[..., :3] = self._rgb
        self._base[..., 3] = 255
        self._blinks = BlinkSchedule(seed)
        self._build_fields()

    # -- set-up ---------------------------------------------------------------------------

    def _build_fields(self) -> None:
        face = self.face
        ied = max(face.eye_distance, 8.0)
        self._ied = ied
        bx, by, bw, bh = face.box
        mcx, mcy = face.mouth_center
        mouth_w = max(face.mouth_width, 0.3 * ied)
        self._mouth_w = mouth_w
        self._lip_y = lip_y = mcy + 0.06 * mouth_w
        self._mcx = mcx
        chin_y = max(lip_y + 0.6 * ied, min(by + bh, lip_y + 1.2 * ied))
        fall = 0.6 * ied
        fcx, fcy = bx + bw / 2, by + bh / 2
        rx, ry = 0.5 * bw * 1.35, 0.5 * bh * 1.35
        self._pivot = (fcx, chin_y + 0.5 * ied)

        x0 = max(0, int(fcx - 1.15 * rx) - 2)
        x1 = min(self._width, math.ceil(fcx + 1.15 * rx) + 2)
        y0 = max(0, int(fcy - 1.15 * ry) - 2)
        y1 = min(self._height, math.ceil(max(fcy + 1.15 * ry, chin_y + fall)) + 2)
        self._roi = (x0, y0, x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self._xs, self._ys = xs, ys

        # Head: 1 inside the (enlarged) face ellipse, fading to 0 outside it.
        r = np.sqrt(((xs - fcx) / rx) ** 2 + ((ys - fcy) / ry) ** 2)
        head = smoothstep((1.15 - r) / 0.3)
        px, py = self._pivot
        self._head = head
        self._roll_x = (-(ys - py) * head).astype(np.float32)
        self._roll_y = ((xs - px) * head).astype(np.float32)

        # Jaw: everything from the lip line to the chin drops, fading out below the chin.
        ramp = max(1.5, 0.04 * ied)
        wy = smoothstep((ys - (lip_y - ramp)) / (2 * ramp)) * smoothstep(
            (chin_y + fall - ys) / fall
        )
        wx = np.exp(-(((xs - mcx) / (0.8 * ied)) ** 4)).astype(np.float32)
        self._jaw = (wx * wy).astype(np.float32)

        # Lip spread: horizontal stretch about the mouth centre.
        g = np.exp(-(((xs - mcx) / (0.7 * mouth_w)) ** 2) - ((ys - lip_y) / (0.45 * mouth_w)) ** 2)
        self._spread = ((xs - mcx) * g).astype(np.float32)

        # Eyelids: a closed-eye patch per eye, made once from the skin just above and below it.
        self._eyes = [self._eye_patch(ex, ey) for ex, ey in face.eyes]

        # Where the mouth interior can appear.
        max_open = JAW_DROP * ied
        mx0 = max(x0, int(mcx - 0.75 * mouth_w))
        mx1 = min(x1, math.ceil(mcx + 0.75 * mouth_w))
        my0 = max(y0, int(lip_y - 0.1 * ied - 4))
        my1 = min(y1, math.ceil(lip_y + max_open + 0.1 * ied + 4))
        self._mouth_box = (mx0, my0, mx1, my1)

    # -- Renderer -------------------------------------------------------------------------

    def pose_at(self, request: FrameRequest) -> Pose:
        shift, roll = idle_sway(request.time_s, self._ied, request.mouth.open)
        return Pose(
            mouth=request.mouth,
            blink=self._blinks.amount(request.time_s),
            shift=shift,
            roll=roll,
        )

    def render(self, batch: Sequence[FrameRequest]) -> Frames:
        out = np.empty((len(batch), self._height, self._width, RGBA_CHANNELS), dtype=np.uint8)
        for i, request in enumerate(batch):
            self.render_pose(self.pose_at(request), out=out[i])
        return out

    def close(self) -> None:
        pass

    # -- drawing --------------------------------------------------------------------------

    def render_pose(
        self, pose: Pose, out: npt.NDArray[np.uint8] | None = None
    ) -> npt.NDArray[np.uint8]:
        """One RGBA frame of the portrait in `pose`."""
        if out is None:
            out = np.empty((self._height, self._width, RGBA_CHANNELS), dtype=np.uint8)
        out[...] = self._base
        x0, y0, x1, y1 = self._roi
        opening = min(1.0, max(0.0, pose.mouth.open))
        open_px = opening * JAW_DROP * self._ied
        sx, sy = pose.shift
        dx = sx * self._head + pose.roll * self._roll_x
        dy = sy * self._head + pose.roll * self._roll_y
        if open_px > 0.0:
            dy += open_px * self._jaw
            if pose.mouth.width != 0.0:
                dx += (SPREAD * pose.mouth.width * min(1.0, 3.0 * opening)) * self._spread
        source = self._with_blink(pose.blink) if pose.blink > 0.01 else self._rgb
        warped = bilinear(source, self._xs - dx, self._ys - dy)
        if open_px > 0.5:
            self._draw_interior(warped, pose, open_px)
        out[y0:y1, x0:x1, :3] = warped
        return out

    def _draw_interior(self, roi: npt.NDArray[np.uint8], pose: Pose, open_px: float) -> None:
        x0, y0, _, _ = self._roi
        mx0, my0, mx1, my1 = self._mouth_box
        sx, sy = pose.shift
        px, py = self._pivot
        # Where the head motion moved the mouth.
        cx = self._mcx + sx - pose.roll * (self._lip_y - py)
        cy = self._lip_y + sy + pose.roll * (self._mcx - px) + open_px / 2
        ax = 0.5 * self._mouth_w * (0.88 + 0.12 * pose.mouth.width)
        ay = max(0.5, 0.5 * open_px)
        ys, xs = np.mgrid[my0:my1, mx0:mx1].astype(np.float32)
        r2 = ((xs - cx) / ax) ** 2 + ((ys - cy) / ay) ** 2
        alpha = np.clip((1.0 - r2) * 2.5, 0.0, 1.0) * (MOUTH_OPACITY * min(1.0, open_px / 3.0))
        # Darker towards the middle, like a mouth cavity.
        shade = MOUTH_INTERIOR * (0.75 + 0.25 * np.clip(r2, 0.0, 1.0))[..., None]
        patch = roi[my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0].astype(np.float32)
        a = alpha[..., None]
        patch = patch * (1.0 - a) + shade * a
        roi[my0 - y0 : my1 - y0, mx0 - x0 : mx1 - x0] = patch.astype(np.uint8)

    def _eye_patch(self, ex: float, ey: float) -> _EyePatch:
        ax, ay = EYE_HALF_SIZE[0] * self._ied, EYE_HALF_SIZE[1] * self._ied
        x0 = max(0, int(ex - ax) - 1)
        x1 = min(self._width, math.ceil(ex + ax) + 2)
        y0 = max(1, int(ey - ay) - 1)
        y1 = min(self._height - 1, math.ceil(ey + ay) + 2)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        q = ((xs - ex) / ax) ** 2 + ((ys - ey) / ay) ** 2
        mask = smoothstep((1.0 - q) / 0.35)
        # Closed lid: per column, a vertical blend of the skin above and below the eye.
        above = self._rgb[y0 - 1, x0:x1].astype(np.float32)
        below = self._rgb[min(self._height - 1, y1), x0:x1].astype(np.float32)
        t = ((ys - (y0 - 1)) / max(1.0, y1 - y0 + 1.0))[..., None]
        skin = above[None, :, :] * (1.0 - t) + below[None, :, :] * t
        return _EyePatch(
            box=(x0, y0, x1, y1), ys=ys, mask=mask, skin=skin, top=ey - ay, travel=1.35 * ay
        )

    def _with_blink(self, closure: float) -> npt.NDArray[np.uint8]:
        """The source image with the eyelids lowered by `closure` (0 open .. 1 closed)."""
        source = self._rgb.copy()
        lash = max(0.8, 0.025 * self._ied)
        for eye in self._eyes:
            x0, y0, x1, y1 = eye.box
            lid = eye.top + min(1.0, closure) * eye.travel
            cover = np.clip((lid - eye.ys) / 1.5 + 0.5, 0.0, 1.0) * eye.mask
            edge = (
                LASH_DARKEN
                * np.exp(-(((eye.ys - lid) / lash) ** 2))
                * eye.mask
                * min(1.0, 4 * closure)
            )
            patch = source[y0:y1, x0:x1].astype(np.float32)
            patch = patch * (1.0 - cover[..., None]) + eye.skin * cover[..., None]
            patch *= (1.0 - edge)[..., None]
            source[y0:y1, x0:x1] = (patch + 0.5).astype(np.uint8)
        return source


@dataclass(frozen=True)
class _EyePatch:
    box: tuple[int, int, int, int]
    ys: F32
    mask: F32
    skin: F32
    top: float
    travel: float


def bilinear(image: npt.NDArray[np.uint8], xs: F32, ys: F32) -> npt.NDArray[np.uint8]:
    """`image` (h, w, c) sampled at float coordinates (clamped to the edges)."""
    height, width, channels = image.shape
    xs = np.clip(xs, 0.0, width - 1.001)
    ys = np.clip(ys, 0.0, height - 1.001)
    xi = xs.astype(np.int32)
    yi = ys.astype(np.int32)
    fx = (xs - xi)[..., None]
    fy = (ys - yi)[..., None]
    flat = image.reshape(-1, channels)
    idx = yi * width + xi
    a = flat[idx].astype(np.float32)
    b = flat[idx + 1].astype(np.float32)
    c = flat[idx + width].astype(np.float32)
    d = flat[idx + width + 1].astype(np.float32)
    top = a + (b - a) * fx
    bottom = c + (d - c) * fx
    out: npt.NDArray[np.uint8] = (top + (bottom - top) * fy + 0.5).astype(np.uint8)
    return out
