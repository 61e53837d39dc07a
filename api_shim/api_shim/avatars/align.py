"""Alignment and encoding of an accepted portrait: the image is rotated so that the eyes are
level (then cropped to the largest upright rectangle inside it, so no blank corners appear),
scaled down to at most 800 px wide, and encoded as JPEG at quality 85 with no metadata (EXIF may
carry a location). The face box and landmarks follow every step, so they describe the stored
image exactly; the worker reads them from the Avatar instead of detecting again."""

from __future__ import annotations

import hashlib
import io
import math
from dataclasses import dataclass

import cv2
import numpy as np
import numpy.typing as npt
from PIL import Image

from api_shim.avatars.faces import RGB, DetectedFace, Points, clip_box
from avatar_crds.avatar import MAX_IMAGE_HEIGHT, MAX_IMAGE_WIDTH

JPEG_QUALITY = 85
MIN_ROLL_DEGREES = 1.0  # below this the eyes are level enough; rotating would only blur
MAX_ROLL_DEGREES = 45.0

Affine = npt.NDArray[np.float64]  # (2, 3)


@dataclass(frozen=True)
class AlignedPortrait:
    jpeg: bytes
    width: int
    height: int
    face: DetectedFace  # in the stored image's pixels
    roll_degrees: float  # how much the photo was rotated to level the eyes

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.jpeg).hexdigest()


def roll_of(face: DetectedFace) -> float:
    """The angle of the line from the image-left eye to the image-right eye, in degrees
    (positive: the right eye is lower)."""
    (lx, ly), (rx, ry) = face.landmarks[0], face.landmarks[1]
    return math.degrees(math.atan2(ry - ly, rx - lx))


def largest_upright_rect(width: float, height: float, degrees: float) -> tuple[float, float]:
    """Width and height of the largest axis-aligned rectangle inside a width x height rectangle
    rotated by `degrees` about its centre (the rectangle shares that centre)."""
    angle = math.radians(degrees)
    sin_a, cos_a = abs(math.sin(angle)), abs(math.cos(angle))
    long_side, short_side = max(width, height), min(width, height)
    if short_side <= 2.0 * sin_a * cos_a * long_side or abs(sin_a - cos_a) < 1e-10:
        half = 0.5 * short_side
        if width >= height:
            return half / sin_a, half / cos_a
        return half / cos_a, half / sin_a
    cos_2a = cos_a * cos_a - sin_a * sin_a
    return (width * cos_a - height * sin_a) / cos_2a, (height * cos_a - width * sin_a) / cos_2a


def apply(matrix: Affine, points: Points) -> Points:
    result: Points = points @ matrix[:, :2].T + matrix[:, 2]
    return result


def transform_face(face: DetectedFace, matrix: Affine, size: tuple[int, int]) -> DetectedFace:
    """The face after an affine map: landmarks mapped, box = bounds of the mapped corners."""
    x, y, w, h = face.box
    corners = apply(matrix, np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]))
    (x0, y0), (x1, y1) = corners.min(axis=0), corners.max(axis=0)
    box = clip_box((float(x0), float(y0), float(x1 - x0), float(y1 - y0)), size)
    return DetectedFace(box, face.score, apply(matrix, face.landmarks))


def level_eyes(pixels: RGB, face: DetectedFace) -> tuple[RGB, DetectedFace, float]:
    """Rotate (and crop) so the eyes are level; unchanged when they nearly are, when the tilt is
    implausible, or when the crop would cut the face."""
    degrees = roll_of(face)
    if abs(degrees) < MIN_ROLL_DEGREES or abs(degrees) > MAX_ROLL_DEGREES:
        return pixels, face, 0.0
    height, width = pixels.shape[:2]
    crop_w, crop_h = largest_upright_rect(width, height, degrees)
    crop_w, crop_h = math.floor(crop_w), math.floor(crop_h)
    left, top = (width - crop_w) / 2, (height - crop_h) / 2
    matrix = np.asarray(
        cv2.getRotationMatrix2D((width / 2, height / 2), degrees, 1.0), dtype=np.float64
    )
    matrix[:, 2] -= np.array([left, top])
    x, y, w, h = face.box
    corners = apply(matrix, np.array([[x, y], [x + w, y], [x, y + h], [x + w, y + h]]))
    inside = (
        corners.min() >= 0 and (corners[:, 0] <= crop_w).all() and (corners[:, 1] <= crop_h).all()
    )
    if not inside or crop_w < 1 or crop_h < 1:
        return pixels, face, 0.0
    rotated = cv2.warpAffine(
        pixels, matrix, (crop_w, crop_h), flags=cv2.INTER_CUBIC, borderMode=cv2.BORDER_REPLICATE
    )
    return np.ascontiguousarray(rotated), transform_face(face, matrix, (crop_w, crop_h)), degrees


def fit_height(pixels: RGB, face: DetectedFace, max_height: int) -> tuple[RGB, DetectedFace]:
    """Crop rows around the face so the image is at most `max_height` tall."""
    height, width = pixels.shape[:2]
    if height <= max_height:
        return pixels, face
    centre = face.box[1] + face.box[3] / 2
    top = int(min(max(0.0, centre - max_height / 2), height - max_height))
    matrix = np.array([[1.0, 0.0, 0.0], [0.0, 1.0, -float(top)]])
    cropped = np.ascontiguousarray(pixels[top : top + max_height])
    return cropped, transform_face(face, matrix, (width, max_height))


def shrink_first(pixels: RGB, face: DetectedFace, max_width: int) -> tuple[RGB, DetectedFace]:
    """Scale a large photo down before rotating it, to about the width the levelled crop will
    be stored at: rotating (and interpolating) a few megapixels less is most of the cost."""
    height, width = pixels.shape[:2]
    degrees = roll_of(face)
    crop_w = width
    if MIN_ROLL_DEGREES <= abs(degrees) <= MAX_ROLL_DEGREES:
        crop_w = math.floor(largest_upright_rect(width, height, degrees)[0])
    # Two pixels to spare: the crop, recomputed at the new size, must not round below max_width.
    scale = (max_width + 2) / max(crop_w, 1)
    if scale >= 1.0:
        return pixels, face
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    smaller: RGB = np.asarray(cv2.resize(pixels, size, interpolation=cv2.INTER_AREA), np.uint8)
    sx, sy = size[0] / width, size[1] / height
    return smaller, transform_face(face, np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]]), size)


def encode_jpeg(pixels: RGB, quality: int = JPEG_QUALITY) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=quality, optimize=True)
    return buffer.getvalue()


def align_portrait(
    pixels: RGB,
    face: DetectedFace,
    *,
    max_width: int = MAX_IMAGE_WIDTH,
    max_height: int = MAX_IMAGE_HEIGHT,
    quality: int = JPEG_QUALITY,
) -> AlignedPortrait:
    pixels, face = shrink_first(pixels, face, max_width)
    leveled, face, degrees = level_eyes(pixels, face)
    height, width = leveled.shape[:2]
    scale = min(1.0, max_width / width)
    leveled, face = fit_height(leveled, face, math.floor(max_height / scale))
    height, width = leveled.shape[:2]
    out_w, out_h = max(1, round(width * scale)), max(1, round(height * scale))
    if (out_w, out_h) != (width, height):
        resized = cv2.resize(leveled, (out_w, out_h), interpolation=cv2.INTER_AREA)
        sx, sy = out_w / width, out_h / height
        face = transform_face(face, np.array([[sx, 0.0, 0.0], [0.0, sy, 0.0]]), (out_w, out_h))
    else:
        resized = leveled
    jpeg = encode_jpeg(np.ascontiguousarray(resized), quality)
    return AlignedPortrait(jpeg, out_w, out_h, face, degrees)
