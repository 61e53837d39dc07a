"""`lite` tier: one portrait animated on the CPU with numpy.

Set-up (once per portrait and frame size, `LiteRig`; tens of milliseconds, most of it finding
the lips' seam): the portrait is fitted to the output frame, and from the face landmarks the
rig holds a rigid head motion field over the head region (shift and roll about the neck),
a mouth rig (`render.mouth`: the lips' seam, the jaw's fields, interior colours from the skin
tone) and an eyelid per eye (`render.eyes`: lid skin and lash colours sampled from the
portrait). Per frame, the lids are lowered on a copy of the portrait (blink schedule), the
head motion (slow idle sway) and the mouth warp (jaw drop and lip spread from the mouth shape)
are composed into one backward bilinear warp of the head region, and the gap that opens between
the lips is painted with the interior. The cost scales with the head region, not the frame: a
few milliseconds at 640x480 on one core.
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from avatar_worker.render.base import RGBA_CHANNELS, FrameByFrameRenderer, FrameRequest, Frames
from avatar_worker.render.eyes import Eyelid
from avatar_worker.render.fields import F32, bilinear_packed, packed, region_median, smoothstep
from avatar_worker.render.mouth import MouthRig
from avatar_worker.render.portrait import FaceGeometry, Portrait, fit
from avatar_worker.render.visemes import CLOSED, MouthShape

# Motion amplitudes, in units of the distance between the eyes.
SWAY_SHIFT = (0.035, 0.02)  # idle head shift, x and y
SWAY_ROLL = 0.015  # idle head roll, radians
NOD = 0.04  # extra downward head motion while the jaw is open
CHEEK = (0.6, 0.12)  # cheek sample below each eye (depth) and its half size

# Blink timing, seconds.
BLINK_CLOSE, BLINK_HOLD, BLINK_OPEN = 0.07, 0.04, 0.12
BLINK_GAP = (2.2, 5.5)


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


class LiteRig:
    """The set-up of one portrait at one frame size: the fitted portrait, the head's motion
    fields, the mouth rig and the eyelids. Slow to build (the mouth's seam is searched for) and
    only read once built: its arrays are frozen, so the renderers of several sessions may draw
    from one rig (`render.prepared` keeps them across a pool worker's sessions), each with its
    own blink schedule and frame buffers."""

    def __init__(self, portrait: Portrait, size: tuple[int, int]) -> None:
        self.size = size
        self._width, self._height = size
        fitted = fit(portrait, size)
        self.face = fitted.face  # geometry in output coordinates (tests read it)
        self.rgb = np.ascontiguousarray(fitted.image)
        self.base = np.empty((self._height, self._width, RGBA_CHANNELS), dtype=np.uint8)
        self.base[..., :3] = self.rgb
        self.base[..., 3] = 255
        self._build_fields()
        _freeze(self, self.mouth, self.mouth.colours, *self.eyelids)

    def _build_fields(self) -> None:
        face = self.face
        ied = max(face.eye_distance, 8.0)
        self.ied = ied
        bx, by, bw, bh = face.box
        _, mcy = face.mouth_center
        mouth_w = max(face.mouth_width, 0.3 * ied)
        lip_y = mcy + 0.06 * mouth_w
        chin_y = max(lip_y + 0.6 * ied, min(by + bh, lip_y + 1.2 * ied))
        fall = 0.6 * ied
        fcx, fcy = bx + bw / 2, by + bh / 2
        rx, ry = 0.5 * bw * 1.35, 0.5 * bh * 1.35
        self.pivot = (fcx, chin_y + 0.5 * ied)

        x0 = max(0, int(fcx - 1.15 * rx) - 2)
        x1 = min(self._width, math.ceil(fcx + 1.15 * rx) + 2)
        y0 = max(0, int(fcy - 1.15 * ry) - 2)
        y1 = min(self._height, math.ceil(max(fcy + 1.15 * ry, chin_y + fall)) + 2)
        self.roi = (x0, y0, x1, y1)
        ys, xs = np.mgrid[y0:y1, x0:x1].astype(np.float32)
        self.xs, self.ys = xs, ys

        # Head: 1 inside the (enlarged) face ellipse, fading to 0 outside it.
        r = np.sqrt(((xs - fcx) / rx) ** 2 + ((ys - fcy) / ry) ** 2)
        head = smoothstep((1.15 - r) / 0.3)
        px, py = self.pivot
        self.head = head
        self.roll_x = (-(ys - py) * head).astype(np.float32)
        self.roll_y = ((xs - px) * head).astype(np.float32)

        self.skin = skin_tone(self.rgb, face)
        (lx, ly), (rx, ry) = face.mouth_corners
        if rx - lx < 0.3 * ied:  # corners (nearly) on top of each other: a mouth of some width
            lx, rx = (lx + rx) / 2 - 0.5 * mouth_w, (lx + rx) / 2 + 0.5 * mouth_w
        left, right = (lx, ly), (rx, ry)
        self.mouth = MouthRig(self.rgb, left, right, self.skin, ied, self.roi, chin_y)
        self.eyelids = [Eyelid(self.rgb, eye, ied, self.skin) for eye in face.eyes]


class LiteRenderer(FrameByFrameRenderer):
    """One session's drawing of a portrait: from its own rig, or from a prepared one (`rig`,
    which must be for this frame size)."""

    def __init__(
        self,
        portrait: Portrait | LiteRig,
        size: tuple[int, int],
        *,
        seed: int = 7,
    ) -> None:
        super().__init__(size)
        rig = portrait if isinstance(portrait, LiteRig) else LiteRig(portrait, size)
        if rig.size != size:
            raise ValueError(f"a rig for {rig.size} cannot draw {size} frames")
        self.rig = rig
        self.face = rig.face  # geometry in output coordinates (tests read it)
        self.mouth = rig.mouth
        self.eyelids = rig.eyelids
        self.skin = rig.skin
        self._blinks = BlinkSchedule(seed)

    # -- Renderer -------------------------------------------------------------------------

    def pose_at(self, request: FrameRequest) -> Pose:
        shift, roll = idle_sway(request.time_s, self.rig.ied, request.mouth.open)
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
        rig = self.rig
        if out is None:
            out = np.empty((self._height, self._width, RGBA_CHANNELS), dtype=np.uint8)
        out[...] = rig.base
        x0, y0, x1, y1 = rig.roi
        sx, sy = pose.shift
        # Head coordinates of every output pixel: where it was before the head moved.
        qx = rig.xs - (sx * rig.head + pose.roll * rig.roll_x)
        qy = rig.ys - (sy * rig.head + pose.roll * rig.roll_y)
        source = self._with_blink(pose.blink) if pose.blink > 0.01 else rig.base
        frame = packed(out)
        if pose.mouth.open <= 0.0:
            frame[y0:y1, x0:x1] = bilinear_packed(packed(source), qx, qy)
            return out
        mx0, my0, mx1, my1 = rig.mouth.box
        jaw = (slice(my0 - y0, my1 - y0), slice(mx0 - x0, mx1 - x0))
        warp = rig.mouth.warp(qx[jaw], qy[jaw], pose.mouth)
        qx[jaw] = warp.src_x
        qy[jaw] = warp.src_y
        frame[y0:y1, x0:x1] = bilinear_packed(packed(source), qx, qy)
        rig.mouth.paint(out[my0:my1, mx0:mx1, :3], warp)
        return out

    def _with_blink(self, closure: float) -> npt.NDArray[np.uint8]:
        """The RGBA source with the eyelids lowered by `closure` (0 open .. 1 closed)."""
        source = self.rig.base.copy()
        for lid in self.rig.eyelids:
            lid.close(source, closure)
        return source


def _freeze(*holders: object) -> None:
    """Make the arrays these objects hold read-only: an in-place write by mistake would
    otherwise reach every session drawing from the same rig."""
    for holder in holders:
        for value in vars(holder).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False


def skin_tone(rgb: npt.NDArray[np.uint8], face: FaceGeometry) -> F32:
    """The face's skin colour: the median of a patch of each cheek, below the eyes."""
    ied = max(face.eye_distance, 8.0)
    depth, half = CHEEK
    patches = [region_median(rgb, (ex, ey + depth * ied), half * ied) for ex, ey in face.eyes]
    out: F32 = np.mean(patches, axis=0).astype(np.float32)
    return out
