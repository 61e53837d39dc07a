"""Face analysis on real photographs that ship with registry packages:

- scikit-image's `astronaut` (Eileen Collins' NASA portrait: one face), `rocket`, `coffee`
  and `chelsea` (no face);
- insightface's `t1.jpg` (a group photo) and `Tom_Hanks_54745.png` (a 112 px face crop), files of
  the insightface wheel;
- composed honestly from those: two real faces side by side, and the astronaut portrait placed
  in a larger real scene (the rocket photo), where her face is too small a part of the frame.

The default detector (BlazeFace + Face Mesh) runs for real; the pipeline around it too.
"""

from __future__ import annotations

import importlib.util
import io
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from skimage import data

from api_shim.avatars.blazeface import BlazeFaceDetector, default_weights_dir
from api_shim.avatars.faces import DetectedFace
from api_shim.avatars.pipeline import AvatarPipeline, PreparedAvatar
from api_shim.avatars.problems import ImageRejectedError, Rejection


def sample(name: str) -> npt.NDArray[np.uint8]:
    """One of scikit-image's sample photographs (its loaders are untyped)."""
    image: npt.NDArray[np.uint8] = getattr(data, name)()
    return image


def insightface_image(name: str) -> Image.Image:
    spec = importlib.util.find_spec("insightface")
    assert spec is not None
    assert spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return Image.open(root / "data" / "images" / name).convert("RGB")


def jpeg(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def astronaut() -> Image.Image:
    return Image.fromarray(sample("astronaut"))


def group_photo() -> Image.Image:
    return insightface_image("t1.jpg")


def two_faces() -> Image.Image:
    """The astronaut's head and Tom Hanks' face crop, side by side at similar sizes."""
    canvas = Image.new("RGB", (480, 260), (200, 200, 200))
    canvas.paste(astronaut().crop((140, 20, 320, 220)), (20, 30))
    canvas.paste(insightface_image("Tom_Hanks_54745.png").resize((200, 200)), (260, 30))
    return canvas


def face_too_small() -> Image.Image:
    """The portrait in the corner of a 1200x900 scene: her face is ~95 px of 900."""
    scene = Image.fromarray(sample("rocket")).resize((1200, 900))
    scene.paste(astronaut(), (1200 - 512 - 40, 900 - 512))
    return scene


@pytest.fixture(scope="module")
def detector() -> BlazeFaceDetector:
    return BlazeFaceDetector()


@pytest.fixture(scope="module")
def pipeline(detector: BlazeFaceDetector) -> AvatarPipeline:
    return AvatarPipeline(lambda: detector)


def assert_sensible(face: DetectedFace) -> None:
    """Eyes above the nose above the mouth, left before right, all inside the face box."""
    (lex, ley), (rex, rey), (nx, ny), (mlx, mly), (mrx, mry) = face.landmarks[:5].tolist()
    x, y, w, h = face.box
    for px, py in face.landmarks[:5].tolist():
        assert x <= px <= x + w
        assert y <= py <= y + h
    assert lex < nx < rex
    assert mlx < nx < mrx
    assert max(ley, rey) < ny < min(mly, mry)
    eye_distance = rex - lex
    assert 0.25 * w < eye_distance < 0.7 * w
    assert abs(ley - rey) < 0.1 * eye_distance  # a straight-on portrait: nearly level


def test_the_default_weights_come_from_the_installed_package() -> None:
    root = default_weights_dir()
    names = {path.name for path in root.glob("*.tflite")}
    assert {"face_detection_short_range.tflite", "face_landmark.tflite"} <= names


def test_the_portrait_has_one_face_with_sensible_landmarks(detector: BlazeFaceDetector) -> None:
    pixels = np.asarray(astronaut())
    faces = detector.detect(pixels)
    assert len(faces) == 1
    found = faces[0]
    assert found.score > 0.8
    # Her face is in the upper middle of the 512x512 photo, about a fifth of its width.
    x, y, w, h = found.box
    assert 150 < x + w / 2 < 300
    assert 60 < y + h / 2 < 200
    assert 70 < w < 140
    refined = detector.refine(pixels, found)
    assert_sensible(refined)
    # Within a few pixels of the points measured by hand for the worker's tests
    # (worker_image/tests/support.py: ASTRONAUT_FACE).
    by_hand = np.array([(203, 101.5), (246, 103), (224, 127), (204, 141), (243, 142)])
    assert np.abs(refined.landmarks[:5] - by_hand).max() < 6
    # Face Mesh's eyes agree with BlazeFace's within a fraction of the eye distance.
    eye_distance = refined.landmarks[1, 0] - refined.landmarks[0, 0]
    assert np.abs(refined.landmarks[:2] - found.landmarks[:2]).max() < 0.25 * eye_distance


def test_the_group_photo_has_several_faces(detector: BlazeFaceDetector) -> None:
    assert len(detector.detect(np.asarray(group_photo()))) >= 4


@pytest.mark.parametrize("photo", ["rocket", "coffee", "chelsea"])
def test_photos_without_people_have_no_face(detector: BlazeFaceDetector, photo: str) -> None:
    assert detector.detect(sample(photo)) == []


def test_the_portrait_is_accepted_aligned_and_resized(pipeline: AvatarPipeline) -> None:
    upscaled = astronaut().resize((1400, 1400), Image.Resampling.LANCZOS)
    prepared: PreparedAvatar = pipeline.process(jpeg(upscaled))
    portrait = prepared.portrait
    assert prepared.detector == "blazeface+facemesh"
    assert portrait.width <= 800
    assert abs(portrait.roll_degrees) < 5  # her head is tilted a little; now level
    assert_sensible(portrait.face)
    (lex, ley), (rex, rey) = portrait.face.landmarks[:2].tolist()
    assert abs(ley - rey) < 0.5
    stored = Image.open(io.BytesIO(portrait.jpeg))
    assert (stored.format, stored.size) == ("JPEG", (portrait.width, portrait.height))
    # The landmarks describe the stored image: detecting again there finds the same eyes.
    again = BlazeFaceDetector().detect(np.asarray(stored.convert("RGB")))
    assert len(again) == 1
    assert np.abs(again[0].landmarks[:2] - portrait.face.landmarks[:2]).max() < 0.25 * (rex - lex)


@pytest.mark.parametrize(
    ("photo", "code"),
    [
        (group_photo, Rejection.MULTIPLE_FACES_DETECTED),
        (two_faces, Rejection.MULTIPLE_FACES_DETECTED),
        (face_too_small, Rejection.FACE_TOO_SMALL),
        (lambda: Image.fromarray(sample("coffee")), Rejection.NO_FACE_DETECTED),
    ],
    ids=["group-photo", "two-faces", "face-too-small", "no-face"],
)
def test_photos_that_are_not_one_prominent_face_are_refused(
    pipeline: AvatarPipeline, photo: object, code: Rejection
) -> None:
    assert callable(photo)
    with pytest.raises(ImageRejectedError) as caught:
        pipeline.process(jpeg(photo()))
    assert caught.value.rejection is code
    assert caught.value.status == 400
