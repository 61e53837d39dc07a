from __future__ import annotations

import math
import statistics
import time

import numpy as np
import pytest
from skimage import color, feature
from skimage import data as skdata

from avatar_crds.enums import AspectRatio, FailureReason, Quality
from avatar_worker.errors import WorkerError
from avatar_worker.render.base import FrameRequest, Renderer
from avatar_worker.render.fields import bilinear_float, bilinear_packed, packed
from avatar_worker.render.lite import (
    BLINK_GAP,
    BlinkSchedule,
    LiteRenderer,
    Pose,
    blink_shape,
)
from avatar_worker.render.portrait import FaceGeometry, Portrait, decode_image, fit
from avatar_worker.render.resolution import FPS, resolution
from avatar_worker.render.visemes import CLOSED, MouthShape
from worker_image.tests.astronaut import ASTRONAUT_FACE, astronaut_rgb

SIZE = resolution(Quality.LITE, AspectRatio.LANDSCAPE)
# A lite frame may take this share of the frame interval on one core: the rest of the core is
# for VP8 encoding and the media pipeline (bench/renderer.py measures the whole session).
FRAME_BUDGET_SHARE = 0.4


@pytest.fixture(scope="module")
def portrait() -> Portrait:
    return Portrait(image=astronaut_rgb(), face=FaceGeometry.from_face(ASTRONAUT_FACE))


@pytest.fixture(scope="module")
def renderer(portrait: Portrait) -> LiteRenderer:
    return LiteRenderer(portrait, SIZE)


def luma_at(image: np.ndarray, x: float, y: float, r: int = 2) -> float:
    grey = color.rgb2gray(image[..., :3]) * 255
    return float(grey[int(y) - r : int(y) + r + 1, int(x) - r : int(x) + r + 1].mean())


def box_around(x: float, y: float, half_w: float, half_h: float) -> tuple[slice, slice]:
    return slice(int(y - half_h), int(y + half_h)), slice(int(x - half_w), int(x + half_w))


def mean_abs_diff(a: np.ndarray, b: np.ndarray, region: tuple[slice, slice]) -> float:
    return float(np.abs(a[region][..., :3].astype(int) - b[region][..., :3].astype(int)).mean())


# -- the hand-measured landmarks are right -------------------------------------------------


def test_astronaut_landmarks_sit_on_eyes_nose_and_mouth(portrait: Portrait) -> None:
    image = portrait.image
    face = portrait.face
    (lx, ly), (rx, ry) = face.eyes
    nx, ny = face.nose
    (mlx, mly), (mrx, mry) = face.mouth_corners
    cheek = (luma_at(image, lx - 3, ny) + luma_at(image, rx + 4, ny)) / 2
    assert luma_at(image, lx, ly) < 0.5 * cheek  # irises are dark against the skin
    assert luma_at(image, rx, ry) < 0.5 * cheek
    assert luma_at(image, mlx, mly) < 0.75 * cheek  # mouth corners are shadowed
    assert luma_at(image, mrx, mry) < 0.75 * cheek
    mcx, mcy = face.mouth_center
    assert luma_at(image, mcx, mcy + 5) > cheek  # she smiles: teeth between the corners
    assert ly < ny < mly
    assert ry < ny < mry
    assert lx < nx < rx


def test_astronaut_face_box_agrees_with_skimage_face_detector(portrait: Portrait) -> None:
    cascade = skdata.lbp_frontal_face_cascade_filename()  # type: ignore[no-untyped-call]
    detector = feature.Cascade(cascade)
    found = detector.detect_multi_scale(
        img=portrait.image, scale_factor=1.2, step_ratio=1, min_size=(60, 60), max_size=(200, 200)
    )
    assert len(found) == 1
    d = found[0]
    x, y, w, h = portrait.face.box
    ix = max(0, min(x + w, d["c"] + d["width"]) - max(x, d["c"]))
    iy = max(0, min(y + h, d["r"] + d["height"]) - max(y, d["r"]))
    overlap = ix * iy / (d["width"] * d["height"])
    assert overlap > 0.8  # the detected face lies inside the measured box
    for px, py in portrait.face.landmarks[:4]:  # eyes, nose and a mouth corner in its square
        assert d["c"] <= px <= d["c"] + d["width"]
        assert d["r"] <= py <= d["r"] + d["height"]


# -- rendering ------------------------------------------------------------------------------


@pytest.mark.parametrize("aspect", list(AspectRatio))
def test_output_shape_matches_the_session_resolution(
    portrait: Portrait, aspect: AspectRatio
) -> None:
    size = resolution(Quality.LITE, aspect)
    lite = LiteRenderer(portrait, size)
    assert isinstance(lite, Renderer)
    frames = lite.render([FrameRequest(index=0, time_s=0.0), FrameRequest(index=1, time_s=0.04)])
    assert frames.shape == (2, size[1], size[0], 4)
    assert frames.dtype == np.uint8
    assert (frames[..., 3] == 255).all()
    mx, my = lite.face.mouth_center
    assert 0 < mx < size[0]
    assert 0 < my < size[1]


def test_rest_pose_is_the_portrait_itself(portrait: Portrait, renderer: LiteRenderer) -> None:
    rest = renderer.render_pose(Pose())
    fitted = fit(portrait, SIZE)
    assert np.array_equal(rest[..., :3], fitted.image)


def test_open_mouth_changes_the_mouth_region_only(renderer: LiteRenderer) -> None:
    closed = renderer.render_pose(Pose(mouth=CLOSED))
    opened = renderer.render_pose(Pose(mouth=MouthShape(open=1.0, width=0.0)))
    mcx, mcy = renderer.face.mouth_center
    width = renderer.face.mouth_width
    mouth = box_around(mcx, mcy + 0.2 * width, 0.6 * width, 0.45 * width)
    assert mean_abs_diff(closed, opened, mouth) > 20
    (lx, ly), (rx, ry) = renderer.face.eyes
    eyes = box_around((lx + rx) / 2, (ly + ry) / 2, 0.8 * (rx - lx), 0.15 * (rx - lx))
    assert mean_abs_diff(closed, opened, eyes) == 0
    assert np.array_equal(closed[:20, :20], opened[:20, :20])  # background untouched


def test_mouth_gets_darker_as_it_opens(renderer: LiteRenderer) -> None:
    mcx, mcy = renderer.face.mouth_center
    width = renderer.face.mouth_width
    mouth = box_around(mcx, mcy + 0.3 * width, 0.5 * width, 0.5 * width)

    def dark_fraction(opening: float) -> float:
        frame = renderer.render_pose(Pose(mouth=MouthShape(open=opening)))
        grey = color.rgb2gray(frame[mouth][..., :3]) * 255
        return float((grey < 70).mean())

    fractions = [dark_fraction(x) for x in (0.0, 0.33, 0.66, 1.0)]
    assert fractions == sorted(fractions)
    assert fractions[-1] > fractions[0] + 0.1


def test_spread_and_round_lips_differ(renderer: LiteRenderer) -> None:
    spread = renderer.render_pose(Pose(mouth=MouthShape(open=0.6, width=1.0)))
    rounded = renderer.render_pose(Pose(mouth=MouthShape(open=0.6, width=-1.0)))
    mcx, mcy = renderer.face.mouth_center
    width = renderer.face.mouth_width
    assert mean_abs_diff(spread, rounded, box_around(mcx, mcy, 0.7 * width, 0.4 * width)) > 5


def test_blink_closes_the_eyes_and_leaves_the_mouth(renderer: LiteRenderer) -> None:
    open_eyes = renderer.render_pose(Pose())
    closed_eyes = renderer.render_pose(Pose(blink=1.0))
    half = renderer.render_pose(Pose(blink=0.5))
    ied = renderer.face.eye_distance
    for ex, ey in renderer.face.eyes:
        eye = box_around(ex, ey, 0.25 * ied, 0.08 * ied)
        assert mean_abs_diff(open_eyes, closed_eyes, eye) > 15
        assert 0 < mean_abs_diff(open_eyes, half, eye) < mean_abs_diff(open_eyes, closed_eyes, eye)
        # Closed, the iris is gone: the eye is about as bright as the skin around it.
        assert luma_at(closed_eyes, ex, ey) > 2 * luma_at(open_eyes, ex, ey)
    mcx, mcy = renderer.face.mouth_center
    mouth = box_around(mcx, mcy, 0.5 * renderer.face.mouth_width, 0.3 * renderer.face.mouth_width)
    assert mean_abs_diff(open_eyes, closed_eyes, mouth) == 0


def test_idle_motion_is_slight(renderer: LiteRenderer) -> None:
    x, y, w, h = renderer.face.box
    face = (slice(int(y), int(y + h)), slice(int(x), int(x + w)))
    frames = renderer.render(
        [FrameRequest(index=i, time_s=t) for i, t in enumerate((0.0, 1.0, 2.5, 4.0))]
    )
    diffs = [mean_abs_diff(frames[0], frame, face) for frame in frames[1:]]
    assert any(d > 0.5 for d in diffs)  # the head moves
    assert all(d < 20 for d in diffs)  # ... but only slightly


def test_blink_schedule() -> None:
    assert blink_shape(-0.1) == 0
    assert blink_shape(0.09) == 1.0
    assert blink_shape(1.0) == 0
    schedule = BlinkSchedule(seed=3, first_at=1.0)
    samples = [schedule.amount(i / 25) for i in range(25 * 30)]
    closed_at = [i / 25 for i, value in enumerate(samples) if value == 1.0]
    starts = [t for i, t in enumerate(closed_at) if i == 0 or t - closed_at[i - 1] > 0.5]
    gaps = np.diff(starts)
    assert len(starts) >= 30 / BLINK_GAP[1] - 1
    assert all(BLINK_GAP[0] - 0.1 <= gap <= BLINK_GAP[1] + 0.1 for gap in gaps)
    again = BlinkSchedule(seed=3, first_at=1.0)
    assert [again.amount(i / 25) for i in range(25 * 30)] == samples  # reproducible


def test_unreadable_image_is_reported_as_avatar_unreadable() -> None:
    with pytest.raises(WorkerError) as caught:
        decode_image(b"definitely not a JPEG")
    assert caught.value.reason is FailureReason.AVATAR_UNREADABLE


def test_a_frame_costs_well_under_the_frame_interval(portrait: Portrait) -> None:
    lite = LiteRenderer(portrait, SIZE)
    # Speech with the jaw and lips moving, the head swaying, and a blink at 1.5 s.
    requests = [
        FrameRequest(
            index=i,
            time_s=1.3 + i / FPS,
            mouth=MouthShape(open=0.5 + 0.5 * math.sin(i / 3), width=math.sin(i / 7)),
            speaking=True,
        )
        for i in range(40)
    ]
    lite.render(requests[:3])
    took = []
    for request in requests:
        # CPU time of this thread, not wall time: what a frame costs a core, however busy the
        # machine running the test is.
        start = time.thread_time()
        lite.render([request])
        took.append(time.thread_time() - start)
    assert statistics.median(took) < FRAME_BUDGET_SHARE / FPS


def test_packed_sampling_matches_float_sampling() -> None:
    rng = np.random.default_rng(3)
    rgba = rng.integers(0, 256, (40, 50, 4), dtype=np.uint8)
    ys, xs = np.mgrid[0:40, 0:50].astype(np.float32)
    assert np.array_equal(bilinear_packed(packed(rgba), xs, ys), packed(rgba))  # whole pixels
    xs += rng.uniform(-3, 3, xs.shape).astype(np.float32)
    ys += rng.uniform(-3, 3, ys.shape).astype(np.float32)
    fast = bilinear_packed(packed(rgba), xs, ys).view(np.uint8).reshape(40, 50, 4)
    exact = bilinear_float(rgba, xs, ys)
    assert np.abs(fast.astype(np.float32) - exact).max() <= 1.5
