"""The face-detector interface and the rule every avatar must pass: exactly one clearly visible
face that occupies a prominent part of the frame. Pure: no model is loaded here."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

import numpy as np
import numpy.typing as npt

from api_shim.avatars.problems import ImageRejectedError, Rejection

RGB = npt.NDArray[np.uint8]  # (height, width, 3)
Points = npt.NDArray[np.float64]  # (n, 2), x then y, image pixels

# The Avatar contract: these five first, in this order (image-left before image-right).
LANDMARK_NAMES = ("left_eye", "right_eye", "nose_tip", "mouth_left", "mouth_right")


@dataclass(frozen=True)
class DetectedFace:
    """One face in image pixel coordinates. `box` is (x, y, width, height); `landmarks` has the
    five contract points first, ordered as in LANDMARK_NAMES."""

    box: tuple[float, float, float, float]
    score: float
    landmarks: Points

    @property
    def width(self) -> float:
        return self.box[2]

    @property
    def height(self) -> float:
        return self.box[3]

    @property
    def area(self) -> float:
        return self.box[2] * self.box[3]


class FaceDetector(Protocol):
    """Finds every face in an RGB image. `name` goes into `Avatar.spec.face.detector`."""

    @property
    def name(self) -> str: ...

    def detect(self, image: RGB) -> list[DetectedFace]:
        """Every face found (any size, any score the detector reports at all), best first."""
        ...

    def refine(self, image: RGB, face: DetectedFace) -> DetectedFace:
        """The chosen face with its final landmarks (a second, denser model may run here);
        ImageRejectedError(face_not_clear) if the face cannot be made out."""
        ...


@dataclass(frozen=True)
class FacePolicy:
    # Detections below this score are not faces at all.
    min_score: float = 0.6
    # Another face at least this fraction of the main face's width makes it a group photo;
    # smaller ones (a poster on the wall, a passer-by far behind) are tolerated.
    rival_ratio: float = 0.5
    # The face must be at least this many pixels wide in the uploaded image...
    min_face_pixels: float = 64.0
    # ...and at least this fraction of the image's width or height (a portrait, not a full-body
    # shot or a landscape with someone in it).
    min_face_fraction: float = 0.15


def choose_face(
    faces: Sequence[DetectedFace], image_size: tuple[int, int], policy: FacePolicy
) -> DetectedFace:
    """The one prominent face, or ImageRejectedError saying why there is none."""
    width, height = image_size
    real = [face for face in faces if face.score >= policy.min_score]
    if not real:
        raise ImageRejectedError(
            Rejection.NO_FACE_DETECTED, "No face was found in the image. Upload a portrait photo."
        )
    main = max(real, key=lambda face: face.area)
    rivals = [f for f in real if f is not main and f.width >= policy.rival_ratio * main.width]
    if rivals:
        raise ImageRejectedError(
            Rejection.MULTIPLE_FACES_DETECTED,
            f"{len(rivals) + 1} faces were found; an avatar needs a photo of exactly one person.",
        )
    fraction = max(main.width / width, main.height / height)
    if main.width < policy.min_face_pixels or fraction < policy.min_face_fraction:
        raise ImageRejectedError(
            Rejection.FACE_TOO_SMALL,
            f"The face is {main.width:.0f}x{main.height:.0f} pixels in a {width}x{height} image;"
            f" it must be at least {policy.min_face_pixels:.0f} pixels wide and"
            f" {policy.min_face_fraction:.0%} of the image. Crop closer to the face.",
        )
    return main


def order_landmarks(eyes: Points, nose: Points, mouth: Points) -> Points:
    """The contract order: eyes left to right, nose tip, mouth corners left to right."""
    left_eye, right_eye = sorted((tuple(p) for p in eyes), key=lambda p: p[0])
    mouth_left, mouth_right = sorted((tuple(p) for p in mouth), key=lambda p: p[0])
    return np.array(
        [left_eye, right_eye, tuple(nose.reshape(2)), mouth_left, mouth_right], dtype=np.float64
    )


def clip_box(
    box: tuple[float, float, float, float], image_size: tuple[int, int]
) -> tuple[float, float, float, float]:
    """The part of (x, y, w, h) inside the image."""
    width, height = image_size
    x0, y0 = max(0.0, box[0]), max(0.0, box[1])
    x1, y1 = min(float(width), box[0] + box[2]), min(float(height), box[1] + box[3])
    return (x0, y0, max(0.0, x1 - x0), max(0.0, y1 - y0))
