"""What a viewer sees of the lite avatar: contact sheets to look at, and numeric guards.

`pytest worker_image/tests/test_lite_visual.py -s` writes one contact sheet per test face (16
frames over an utterance with a blink, each captioned with its time, mouth opening and lid
closure) under pytest's base temp directory and prints the paths; `--basetemp DIR` puts them
at `DIR/lite-contact-sheets/`. The guards below measure what a person would complain about:
a hole drawn over the portrait's own teeth, a mouth interior that is black or outside the
face's colours, a mouth that does not open with the sound, and lids that smear instead of
closing as skin with lashes.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image, ImageDraw
from skimage import measure

from avatar_crds.enums import AspectRatio, Quality
from avatar_worker.audio.synthetic import utterance
from avatar_worker.render.base import FrameRequest
from avatar_worker.render.lite import LiteRenderer, Pose
from avatar_worker.render.mouth import JAW_DROP
from avatar_worker.render.portrait import FaceGeometry, Portrait, fit_transform
from avatar_worker.render.resolution import FPS, resolution
from avatar_worker.render.visemes import CLOSED, MouthShape, frame_shapes
from worker_image.tests.astronaut import ASTRONAUT_FACE, astronaut_rgb
from worker_image.tests.synthetic_face import synthetic_portrait

SIZE = resolution(Quality.LITE, AspectRatio.LANDSCAPE)
RATE = 48_000
SPEECH_FROM_S = 1.04  # the blink schedule's first blink starts at 1.5 s, mid-utterance
# Frame times on the sheet: silence, the utterance (1.04 s to about 3 s, with a blink starting
# at 1.5 s: closing, closed at 1.60 s, opening), and silence again.
SHEET_TIMES = (
    1.0,
    1.08,
    1.16,
    1.28,
    1.44,
    1.56,
    1.6,
    1.64,
    1.68,
    1.84,
    2.0,
    2.32,
    2.72,
    2.96,
    3.04,
    3.2,
)
Image8 = npt.NDArray[np.uint8]
Region = tuple[slice, slice]

FACES: dict[str, Callable[[], Portrait]] = {
    "astronaut": lambda: Portrait(
        image=astronaut_rgb(), face=FaceGeometry.from_face(ASTRONAUT_FACE)
    ),
    "synthetic-closed-lips": lambda: synthetic_portrait(teeth=False),
    "synthetic-grin": lambda: synthetic_portrait(teeth=True),
}


@pytest.fixture(scope="module", params=list(FACES))
def face(request: pytest.FixtureRequest) -> tuple[str, LiteRenderer]:
    name: str = request.param
    return name, LiteRenderer(FACES[name](), SIZE)


@pytest.fixture(scope="module")
def astronaut() -> LiteRenderer:
    return LiteRenderer(FACES["astronaut"](), SIZE)


# -- measurements ----------------------------------------------------------------------------


def grey(image: Image8) -> npt.NDArray[np.float32]:
    weights = np.array([0.299, 0.587, 0.114], dtype=np.float32)
    out: npt.NDArray[np.float32] = image[..., :3].astype(np.float32) @ weights
    return out


def box(cx: float, cy: float, half_w: float, half_h: float) -> Region:
    return slice(round(cy - half_h), round(cy + half_h)), slice(
        round(cx - half_w), round(cx + half_w)
    )


def still(renderer: LiteRenderer, mouth: MouthShape = CLOSED, blink: float = 0.0) -> Image8:
    """A frame without head motion, so regions line up with the portrait."""
    return renderer.render_pose(Pose(mouth=mouth, blink=blink))


def mouth_region(renderer: LiteRenderer) -> Region:
    """The lips and everything the opened jaw can uncover."""
    mcx, mcy = renderer.face.mouth_center
    ied = renderer.face.eye_distance
    reach = JAW_DROP * ied
    return box(mcx, mcy + reach / 2, 0.7 * renderer.face.mouth_width, 0.2 * ied + reach / 2)


def inner_face(renderer: LiteRenderer) -> npt.NDArray[np.bool_]:
    """The face without its outline: an ellipse well inside the face box (no hair)."""
    x, y, w, h = renderer.face.box
    ys, xs = np.mgrid[0 : SIZE[1], 0 : SIZE[0]]
    inside: npt.NDArray[np.bool_] = ((xs - x - w / 2) / (0.42 * w)) ** 2 + (
        (ys - y - h / 2) / (0.45 * h)
    ) ** 2 < 1
    return inside


def darkest_of_face(renderer: LiteRenderer) -> float:
    """Luma of the darkest part of the portrait's own face (a pupil, a nostril, a mouth corner):
    the darkest 3x3 mean, so that single dark pixels do not count."""
    luma = grey(still(renderer))
    shifts = [(dy, dx) for dy in (-1, 0, 1) for dx in (-1, 0, 1)]
    mean = np.stack([np.roll(luma, shift, axis=(0, 1)) for shift in shifts]).mean(axis=0)
    return float(mean[inner_face(renderer)].min())


def largest_region_darker_than(image: Image8, region: Region, level: float) -> int:
    labels = measure.label(grey(image[region]) < level)  # type: ignore[no-untyped-call]
    areas = np.bincount(labels.ravel())[1:]
    return int(areas.max()) if areas.size else 0


def skin_sample(renderer: LiteRenderer) -> npt.NDArray[np.float32]:
    """The cheeks' median colour, measured here rather than taken from the renderer."""
    ied = renderer.face.eye_distance
    portrait = still(renderer)
    patches = [
        portrait[box(ex, ey + 0.6 * ied, 0.1 * ied, 0.1 * ied)] for ex, ey in renderer.face.eyes
    ]
    pixels = np.concatenate([p[..., :3].reshape(-1, 3) for p in patches]).astype(np.float32)
    out: npt.NDArray[np.float32] = np.median(pixels, axis=0)
    return out


def gap_rows(image: Image8, renderer: LiteRenderer) -> int:
    """Rows of the mouth's middle column that are mouth interior: dark and red-brown."""
    mcx, _ = renderer.face.mouth_center
    rows, _ = mouth_region(renderer)
    column = image[rows, round(mcx) - 1 : round(mcx) + 2, :3].astype(np.float32).mean(axis=1)
    skin = float(grey(skin_sample(renderer)[None].astype(np.uint8))[0])
    interior = (grey(column.astype(np.uint8)) < 0.55 * skin) & (column[:, 0] > 1.3 * column[:, 1])
    return int(interior.sum())


def portrait_box(
    renderer: LiteRenderer, portrait: Portrait, x0: float, y0: float, x1: float, y1: float
) -> Region:
    """A box given in the original portrait's pixels, in output pixels."""
    scale, dx, dy = fit_transform(portrait.size, portrait.face, SIZE)
    return (
        slice(round(y0 * scale + dy), round(y1 * scale + dy)),
        slice(round(x0 * scale + dx), round(x1 * scale + dx)),
    )


# -- the mouth --------------------------------------------------------------------------------


def test_closed_mouth_is_the_portrait(face: tuple[str, LiteRenderer]) -> None:
    _, renderer = face
    region = mouth_region(renderer)
    portrait = still(renderer)
    assert np.array_equal(still(renderer, CLOSED)[region], portrait[region])
    barely = still(renderer, MouthShape(open=0.02))
    assert np.abs(barely[region].astype(int) - portrait[region].astype(int)).mean() < 1.0


def test_opening_grows_with_the_openness(face: tuple[str, LiteRenderer]) -> None:
    _, renderer = face
    heights = [
        gap_rows(still(renderer, MouthShape(open=o)), renderer) for o in (0, 0.25, 0.5, 0.75, 1)
    ]
    assert heights == sorted(heights)
    assert heights[-1] - heights[0] >= 0.15 * renderer.face.eye_distance
    assert heights[1] < heights[-1]


def test_interior_is_warm_and_never_darker_than_the_face_itself(
    face: tuple[str, LiteRenderer],
) -> None:
    _, renderer = face
    region = mouth_region(renderer)
    floor = darkest_of_face(renderer)
    portrait = still(renderer)
    allowed = largest_region_darker_than(portrait, region, floor)
    for opening in (0.3, 0.6, 1.0):
        frame = still(renderer, MouthShape(open=opening))
        assert largest_region_darker_than(frame, region, floor) <= allowed + 4
        # What the opening uncovered is a dark warm red-brown, not black or grey.
        changed = np.abs(frame[region].astype(int) - portrait[region].astype(int)).sum(-1) > 60
        dark = changed & (
            grey(frame[region]) < 0.6 * grey(skin_sample(renderer)[None].astype(np.uint8))[0]
        )
        r, g, b = frame[region][dark][:, :3].astype(float).mean(axis=0)
        assert r > 1.5 * g
        assert r > 1.5 * b
        assert r > 0.25 * skin_sample(renderer)[0]


def test_mouth_colours_stay_within_the_face_s_own_range(face: tuple[str, LiteRenderer]) -> None:
    _, renderer = face
    region = mouth_region(renderer)
    face_pixels = still(renderer)[inner_face(renderer)][:, :3].astype(float)
    low, high = np.percentile(face_pixels, 0.5, axis=0), np.percentile(face_pixels, 99.5, axis=0)
    closed = still(renderer)[region][..., :3].astype(float)
    for opening in (0.5, 1.0):
        opened = still(renderer, MouthShape(open=opening))[region][..., :3].astype(float)
        assert (np.percentile(opened.reshape(-1, 3), 2, axis=0) >= low - 2).all()
        assert (np.percentile(opened.reshape(-1, 3), 98, axis=0) <= high + 2).all()
        # Opening darkens the mouth region, but it stays a face, not a hole.
        assert (
            grey(opened.mean(axis=(0, 1))[None].astype(np.uint8))[0]
            > 0.7 * grey(closed.mean(axis=(0, 1))[None].astype(np.uint8))[0]
        )


def test_the_smile_s_teeth_stay_with_the_upper_lip(astronaut: LiteRenderer) -> None:
    portrait = FACES["astronaut"]()
    teeth = portrait_box(astronaut, portrait, 214, 144, 229, 148.5)  # the upper front teeth
    closed, opened = still(astronaut), still(astronaut, MouthShape(open=1.0))
    assert grey(closed[teeth]).mean() > 200
    # Not a pixel of them changes, bar a few where the teeth's edge meets the lower lip.
    unchanged = (opened[teeth] == closed[teeth]).all(axis=-1)
    assert unchanged.mean() > 0.95


def test_the_lower_lip_travels_down_with_the_jaw(astronaut: LiteRenderer) -> None:
    portrait = FACES["astronaut"]()
    mcx, _ = astronaut.face.mouth_center
    lip = portrait_box(astronaut, portrait, 218, 149.5, 230, 156)[0]  # lower lip, below teeth
    closed = grey(still(astronaut))
    opened = grey(still(astronaut, MouthShape(open=1.0)))
    columns = slice(round(mcx) - 4, round(mcx) + 5)
    pattern = closed[lip, columns]
    drop = JAW_DROP * astronaut.face.eye_distance
    errors = [
        np.abs(opened[lip.start + s : lip.stop + s, columns] - pattern).mean() for s in range(0, 30)
    ]
    assert abs(int(np.argmin(errors)) - drop) <= 2.5
    assert min(errors) < 12  # the same lip (a wrong shift costs over 100)


def test_the_grin_s_lower_teeth_travel_with_the_jaw() -> None:
    renderer = LiteRenderer(FACES["synthetic-grin"](), SIZE)
    mcx, _ = renderer.face.mouth_center
    rows, _ = mouth_region(renderer)

    def teeth_rows(image: Image8) -> npt.NDArray[np.intp]:
        column = image[rows, round(mcx), :3].astype(int)
        pale = (column.min(axis=1) > 170) & (column.max(axis=1) - column.min(axis=1) < 40)
        out: npt.NDArray[np.intp] = np.flatnonzero(pale) + rows.start
        return out

    closed = teeth_rows(still(renderer))
    opened = teeth_rows(still(renderer, MouthShape(open=1.0)))
    drop = JAW_DROP * renderer.face.eye_distance
    gap = int(np.argmax(np.diff(closed))) + 1  # the dark line between the two rows of teeth
    upper, lower = closed[:gap], closed[gap:]
    assert len(upper) > 3
    assert len(lower) > 3
    assert set(upper) <= set(opened)  # the upper teeth stay
    moved = opened[opened > upper.max() + 2]
    assert len(moved) >= len(lower) - 1  # the lower teeth are all still there ...
    assert abs(float(moved.mean() - lower.mean()) - drop) <= 3  # ... a jaw drop lower


def test_closed_lips_open_onto_upper_teeth_and_a_dark_interior() -> None:
    renderer = LiteRenderer(FACES["synthetic-closed-lips"](), SIZE)
    mcx, _ = renderer.face.mouth_center
    rows, _ = mouth_region(renderer)
    column = still(renderer, MouthShape(open=1.0))[rows, round(mcx), :3].astype(int)
    pale = (column.min(axis=1) > 150) & (column.max(axis=1) - column.min(axis=1) < 50)
    dark_red = (grey(column.astype(np.uint8)) < 90) & (column[:, 0] > 1.5 * column[:, 1])
    teeth_at, dark_at = np.flatnonzero(pale), np.flatnonzero(dark_red)
    assert len(teeth_at) >= 3
    assert len(dark_at) >= 8
    assert teeth_at.max() < dark_at.min()  # teeth under the upper lip, the interior below


# -- the eyes ---------------------------------------------------------------------------------


def lid_skin(renderer: LiteRenderer, eye: tuple[float, float]) -> npt.NDArray[np.float32]:
    """The skin between the open eye and the brow, measured on the portrait."""
    ex, ey = eye
    ied = renderer.face.eye_distance
    band = still(renderer)[box(ex, ey - 0.19 * ied, 0.12 * ied, 0.03 * ied)]
    out: npt.NDArray[np.float32] = np.median(band[..., :3].reshape(-1, 3), axis=0)
    return out


def test_a_closed_lid_is_skin_edged_with_lashes(face: tuple[str, LiteRenderer]) -> None:
    _, renderer = face
    closed = still(renderer, blink=1.0)
    ied = renderer.face.eye_distance
    for eye in renderer.face.eyes:
        ex, ey = eye
        skin = lid_skin(renderer, eye)
        skin_luma = float(grey(skin[None].astype(np.uint8))[0])
        lid = closed[box(ex, ey - 0.04 * ied, 0.1 * ied, 0.04 * ied)][..., :3].astype(float)
        assert np.linalg.norm(lid.mean(axis=(0, 1)) - skin) < 0.12 * skin_luma
        assert grey(lid.astype(np.uint8)).std() < 0.08 * skin_luma  # smooth, not smeared
        lashes = grey(closed[box(ex, ey + 0.09 * ied, 0.12 * ied, 0.07 * ied)])
        assert (lashes.min(axis=0) < 0.45 * skin_luma).mean() > 0.9  # a dark line all along


def test_the_lid_covers_more_of_the_eye_as_it_closes(face: tuple[str, LiteRenderer]) -> None:
    _, renderer = face
    ied = renderer.face.eye_distance
    portrait = still(renderer)
    for ex, ey in renderer.face.eyes:
        eye = box(ex, ey, 0.2 * ied, 0.1 * ied)
        changed = [
            float(
                (
                    np.abs(still(renderer, blink=c)[eye].astype(int) - portrait[eye]).sum(-1) > 30
                ).mean()
            )
            for c in (0.0, 0.25, 0.5, 0.75, 1.0)
        ]
        assert changed == sorted(changed)
        assert changed[0] == 0.0
        assert changed[-1] > 0.5


# -- the contact sheet -------------------------------------------------------------------------


def speech_frames(seconds: float) -> list[MouthShape]:
    """Mouth shapes per frame of silence, then one synthetic utterance, then silence."""
    silence = np.zeros(round(SPEECH_FROM_S * RATE), dtype=np.int16)
    speech = utterance(random.Random(1), RATE)
    audio = np.concatenate([silence, speech, np.zeros(RATE, dtype=np.int16)])
    shapes = frame_shapes(audio, RATE, FPS)
    return shapes[: round(seconds * FPS)]


def contact_sheet(renderer: LiteRenderer, requests: list[FrameRequest]) -> Image.Image:
    frames = renderer.render(requests)
    (lx, ly), (rx, ry) = renderer.face.eyes
    mcx, mcy = renderer.face.mouth_center
    cx, cy, half = (
        (lx + rx + 2 * mcx) / 4,
        (ly + ry + 2 * mcy) / 4,
        1.3 * renderer.face.eye_distance,
    )
    left, top = max(0, round(cx - half)), max(0, round(cy - half))
    right, bottom = min(SIZE[0], round(cx + half)), min(SIZE[1], round(cy + half))
    scale = 240 / (bottom - top)
    tile_w, tile_h, caption = round((right - left) * scale), 240, 16
    sheet = Image.new("RGB", (4 * tile_w, 4 * (tile_h + caption)), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (request, frame) in enumerate(zip(requests, frames, strict=True)):
        tile = Image.fromarray(frame[top:bottom, left:right, :3]).resize((tile_w, tile_h))
        col, row = i % 4, i // 4
        sheet.paste(tile, (col * tile_w, row * (tile_h + caption)))
        pose = renderer.pose_at(request)
        text = f"t={request.time_s:.2f}s  open={request.mouth.open:.2f}  lid={pose.blink:.2f}"
        draw.text((col * tile_w + 4, row * (tile_h + caption) + tile_h + 2), text, fill="black")
    return sheet


def test_contact_sheet_of_an_utterance_with_a_blink(
    face: tuple[str, LiteRenderer], tmp_path_factory: pytest.TempPathFactory
) -> None:
    name, renderer = face
    shapes = speech_frames(SHEET_TIMES[-1] + 0.1)
    indices = [round(t * FPS) for t in SHEET_TIMES]
    requests = [
        FrameRequest(index=i, time_s=i / FPS, mouth=shapes[i], speaking=shapes[i].open > 0)
        for i in indices
    ]
    sheet = contact_sheet(renderer, requests)
    directory: Path = tmp_path_factory.getbasetemp() / "lite-contact-sheets"
    directory.mkdir(exist_ok=True)
    path = directory / f"{name}.png"
    sheet.save(path)
    print(f"\nlite contact sheet ({name}): {path}")
    assert Image.open(path).size == sheet.size
    # The sheet shows what it claims: closed, then open, then closed again, and a blink.
    openings = [r.mouth.open for r in requests]
    assert openings[0] == 0.0
    assert openings[-1] < 0.01
    assert max(openings) > 0.6
    assert max(renderer.pose_at(r).blink for r in requests) == 1.0
    # Every frame of it passes the guards: nothing darker than the face's darkest part
    # grows in the mouth, and the mouth region's colours stay the face's own.
    region = mouth_region(renderer)
    floor = darkest_of_face(renderer)
    allowed = largest_region_darker_than(still(renderer), region, floor)
    for frame in renderer.render(requests):
        assert largest_region_darker_than(frame, region, floor) <= allowed + 4
