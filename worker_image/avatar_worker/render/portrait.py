"""The avatar's portrait and face geometry, loaded once and fitted to the output frame."""

from __future__ import annotations

import io
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
from PIL import Image, UnidentifiedImageError

from avatar_crds.avatar import Face
from avatar_crds.enums import FailureReason
from avatar_worker.errors import WorkerError

Point = tuple[float, float]
MAX_PIXELS = 4096 * 4096


@dataclass(frozen=True)
class FaceGeometry:
    """Face box (x, y, width, height) and landmarks in the image's pixel coordinates.

    The first five landmarks are the two eyes, the nose tip and the two mouth corners
    (the Avatar contract); denser detectors may add more, which are carried but unused.
    """

    box: tuple[float, float, float, float]
    landmarks: tuple[Point, ...]

    @classmethod
    def from_face(cls, face: Face) -> FaceGeometry:
        box = (face.box.x, face.box.y, face.box.width, face.box.height)
        return cls(box=box, landmarks=tuple((p.x, p.y) for p in face.landmarks))

    @property
    def eyes(self) -> tuple[Point, Point]:
        """(image-left eye, image-right eye)."""
        a, b = sorted(self.landmarks[:2])
        return a, b

    @property
    def nose(self) -> Point:
        return self.landmarks[2]

    @property
    def mouth_corners(self) -> tuple[Point, Point]:
        """(image-left corner, image-right corner)."""
        a, b = sorted(self.landmarks[3:5])
        return a, b

    @property
    def eye_distance(self) -> float:
        (ax, ay), (bx, by) = self.eyes
        return float(np.hypot(bx - ax, by - ay))

    @property
    def mouth_center(self) -> Point:
        (ax, ay), (bx, by) = self.mouth_corners
        return ((ax + bx) / 2, (ay + by) / 2)

    @property
    def mouth_width(self) -> float:
        (ax, ay), (bx, by) = self.mouth_corners
        return float(np.hypot(bx - ax, by - ay))

    def transformed(self, scale: float, dx: float, dy: float) -> FaceGeometry:
        """Geometry after scaling the image by `scale` and then shifting it by (dx, dy)."""
        x, y, w, h = self.box
        return FaceGeometry(
            box=(x * scale + dx, y * scale + dy, w * scale, h * scale),
            landmarks=tuple((px * scale + dx, py * scale + dy) for px, py in self.landmarks),
        )


@dataclass(frozen=True)
class Portrait:
    image: npt.NDArray[np.uint8]  # (height, width, 3) RGB
    face: FaceGeometry

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.image.shape[1]), int(self.image.shape[0]))


def decode_image(data: bytes) -> npt.NDArray[np.uint8]:
    """RGB pixels of an encoded image; WorkerError(avatar_unreadable) if it is not one."""
    try:
        with Image.open(io.BytesIO(data)) as image:
            if image.width * image.height > MAX_PIXELS:
                raise WorkerError(
                    FailureReason.AVATAR_UNREADABLE,
                    f"avatar image is {image.width}x{image.height}, larger than allowed",
                )
            rgb = image.convert("RGB")
            rgb.load()
    except WorkerError:
        raise
    except (UnidentifiedImageError, OSError, ValueError, Image.DecompressionBombError) as exc:
        raise WorkerError(
            FailureReason.AVATAR_UNREADABLE, f"avatar image cannot be decoded: {type(exc).__name__}"
        ) from exc
    return np.asarray(rgb, dtype=np.uint8).copy()


def fit_transform(
    image_size: tuple[int, int], face: FaceGeometry, out_size: tuple[int, int]
) -> tuple[float, float, float]:
    """(scale, dx, dy) that covers the output with the image and centres the face in it."""
    iw, ih = image_size
    ow, oh = out_size
    scale = max(ow / iw, oh / ih)
    sw, sh = iw * scale, ih * scale
    x, y, w, h = face.box
    cx, cy = (x + w / 2) * scale, (y + h / 2) * scale
    # Face centre at the middle horizontally and a little above the middle vertically.
    left = min(max(cx - ow / 2, 0.0), sw - ow)
    top = min(max(cy - oh * 0.42, 0.0), sh - oh)
    return scale, -float(round(left)), -float(round(top))


def fit(portrait: Portrait, out_size: tuple[int, int]) -> Portrait:
    """The portrait scaled to cover `out_size` and cropped around the face."""
    ow, oh = out_size
    scale, dx, dy = fit_transform(portrait.size, portrait.face, out_size)
    iw, ih = portrait.size
    sw, sh = max(ow, round(iw * scale)), max(oh, round(ih * scale))
    resized = Image.fromarray(portrait.image).resize((sw, sh), Image.Resampling.LANCZOS)
    left, top = int(-dx), int(-dy)
    cropped = np.asarray(resized, dtype=np.uint8)[top : top + oh, left : left + ow].copy()
    return Portrait(image=cropped, face=portrait.face.transformed(scale, dx, dy))


def load_portrait(data: bytes, face: Face) -> Portrait:
    image = decode_image(data)
    geometry = FaceGeometry.from_face(face)
    height, width = image.shape[:2]
    x, y, w, h = geometry.box
    if x + w > width + 1 or y + h > height + 1:
        raise WorkerError(
            FailureReason.AVATAR_UNREADABLE,
            f"face box lies outside the {width}x{height} avatar image",
        )
    return Portrait(image=image, face=geometry)
