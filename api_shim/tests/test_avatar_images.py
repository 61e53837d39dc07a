"""The pure image code of the avatar pipeline: decoding (and what it refuses), the face rule,
alignment, JPEG encoding, the store and data URIs. Photographs are scikit-image's samples."""

from __future__ import annotations

import base64
import io
import math
import struct
import zlib
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from PIL import Image
from PIL.JpegImagePlugin import JpegImageFile
from skimage import data

from api_shim.avatars.align import (
    JPEG_QUALITY,
    align_portrait,
    largest_upright_rect,
    level_eyes,
    roll_of,
)
from api_shim.avatars.decode import MAX_IMAGE_BYTES, decode_image, parse_data_uri
from api_shim.avatars.faces import DetectedFace, FacePolicy, choose_face, order_landmarks
from api_shim.avatars.problems import ImageRejectedError, Rejection
from api_shim.avatars.store import FilesystemStore, image_key


def sample(name: str) -> npt.NDArray[np.uint8]:
    """One of scikit-image's sample photographs (its loaders are untyped)."""
    image: npt.NDArray[np.uint8] = getattr(data, name)()
    return image


def encoded(image: Image.Image, fmt: str = "JPEG", **options: object) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, fmt, **options)
    return buffer.getvalue()


def rejected(call: object, *args: object) -> Rejection:
    assert callable(call)
    with pytest.raises(ImageRejectedError) as caught:
        call(*args)
    return caught.value.rejection


ASTRONAUT = Image.fromarray(sample("astronaut"))


# --- decode --------------------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["JPEG", "PNG", "WEBP"])
def test_jpeg_png_and_webp_decode_to_rgb(fmt: str) -> None:
    decoded = decode_image(encoded(ASTRONAUT, fmt))
    assert decoded.format == fmt
    assert decoded.pixels.shape == (512, 512, 3)
    assert decoded.pixels.dtype == np.uint8


def test_exif_orientation_is_applied() -> None:
    """Stored sideways with orientation 6 ("rotate 90 clockwise to view"): decoded upright."""
    sideways = ASTRONAUT.crop((0, 0, 512, 384)).transpose(Image.Transpose.ROTATE_90)
    exif = Image.Exif()
    exif[0x0112] = 6
    decoded = decode_image(encoded(sideways, exif=exif))
    assert decoded.size == (512, 384)
    upright = np.asarray(ASTRONAUT.crop((0, 0, 512, 384)), dtype=np.float64)
    assert np.abs(decoded.pixels.astype(np.float64) - upright).mean() < 6  # JPEG noise only


def test_transparency_is_flattened_onto_white() -> None:
    rgba = ASTRONAUT.convert("RGBA")
    rgba.putalpha(0)
    decoded = decode_image(encoded(rgba, "PNG"))
    assert (decoded.pixels == 255).all()


def test_a_non_image_is_refused() -> None:
    assert rejected(decode_image, b"%PDF-1.7\n" + b"x" * 2000) is Rejection.NOT_AN_IMAGE
    assert rejected(decode_image, b"") is Rejection.NOT_AN_IMAGE


@pytest.mark.parametrize("fmt", ["JPEG", "PNG"])
def test_a_truncated_file_is_refused(fmt: str) -> None:
    whole = encoded(ASTRONAUT, fmt)
    assert rejected(decode_image, whole[: len(whole) // 2]) is Rejection.IMAGE_TRUNCATED


def test_an_oversize_file_is_refused_before_decoding() -> None:
    noise = np.random.default_rng(7).integers(0, 256, (2048, 2048, 3), dtype=np.uint8)
    big = encoded(Image.fromarray(noise), "PNG")
    assert len(big) > MAX_IMAGE_BYTES
    with pytest.raises(ImageRejectedError) as caught:
        decode_image(big)
    assert (caught.value.rejection, caught.value.status) == (Rejection.IMAGE_TOO_LARGE, 413)


def _png_bomb(width: int, height: int) -> bytes:
    """A tiny PNG that claims width x height grey pixels (rows of zeros compress ~1000:1)."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    header = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    rows = zlib.compress(b"\x00" * (width + 1) * 64, 9)  # only the first rows: enough to open
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", rows) + chunk(b"IEND", b"")
    )


@pytest.mark.parametrize(
    ("width", "height"),
    [(30_000, 30_000), (8_000, 6_000)],  # beyond Pillow's own bomb limit; beyond only ours
)
def test_a_decompression_bomb_is_refused_from_its_header(width: int, height: int) -> None:
    bomb = _png_bomb(width, height)  # tens of megapixels in a few kilobytes
    assert len(bomb) < 100_000
    assert rejected(decode_image, bomb) is Rejection.IMAGE_DIMENSIONS_TOO_LARGE


def test_other_formats_and_tiny_images_are_refused() -> None:
    gif = encoded(ASTRONAUT.convert("P"), "GIF")
    assert rejected(decode_image, gif) is Rejection.UNSUPPORTED_IMAGE_FORMAT
    tiny = encoded(ASTRONAUT.resize((40, 40)))
    assert rejected(decode_image, tiny) is Rejection.IMAGE_TOO_SMALL


def test_data_uris_and_bare_base64_decode() -> None:
    jpeg = encoded(ASTRONAUT)
    text = base64.b64encode(jpeg).decode()
    assert parse_data_uri(f"data:image/jpeg;base64,{text}") == jpeg
    assert parse_data_uri(text) == jpeg
    assert rejected(parse_data_uri, "data:image/jpeg;base64,@@@") is Rejection.INVALID_DATA_URI
    assert rejected(parse_data_uri, "data:text/plain,hello") is Rejection.INVALID_DATA_URI
    oversize = "A" * (math.ceil(MAX_IMAGE_BYTES / 3) * 4 + 4)
    assert rejected(parse_data_uri, oversize) is Rejection.IMAGE_TOO_LARGE


# --- the face rule -------------------------------------------------------------------------------


def face(x: float, y: float, size: float, score: float = 0.9) -> DetectedFace:
    eyes = np.array([[x + 0.3 * size, y + 0.4 * size], [x + 0.7 * size, y + 0.4 * size]])
    mouth = np.array([[x + 0.35 * size, y + 0.8 * size], [x + 0.65 * size, y + 0.8 * size]])
    nose = np.array([x + 0.5 * size, y + 0.6 * size])
    return DetectedFace((x, y, size, size), score, order_landmarks(eyes, nose, mouth))


POLICY = FacePolicy()


def test_one_prominent_face_is_chosen() -> None:
    main = face(200, 100, 200)
    assert choose_face([main], (600, 800), POLICY) is main


def test_no_face_or_only_weak_detections_is_no_face() -> None:
    assert rejected(choose_face, [], (600, 800), POLICY) is Rejection.NO_FACE_DETECTED
    weak = [face(200, 100, 200, score=0.3)]
    assert rejected(choose_face, weak, (600, 800), POLICY) is Rejection.NO_FACE_DETECTED


def test_two_comparable_faces_are_a_group_photo() -> None:
    pair = [face(50, 100, 200), face(350, 100, 150)]
    assert rejected(choose_face, pair, (600, 800), POLICY) is Rejection.MULTIPLE_FACES_DETECTED


def test_a_small_face_far_behind_is_tolerated() -> None:
    main, passer_by = face(200, 100, 200), face(20, 20, 60)
    assert choose_face([passer_by, main], (600, 800), POLICY) is main


def test_a_small_face_in_a_large_frame_is_too_small() -> None:
    full_body = [face(500, 100, 90)]  # 90 px in a 1200x1600 photo: 7.5% of the width
    assert rejected(choose_face, full_body, (1200, 1600), POLICY) is Rejection.FACE_TOO_SMALL
    tiny = [face(10, 10, 50)]  # most of a 120 px image, but only 50 px
    assert rejected(choose_face, tiny, (120, 120), POLICY) is Rejection.FACE_TOO_SMALL


def test_landmarks_are_ordered_left_to_right() -> None:
    points = order_landmarks(
        np.array([[70.0, 40.0], [30.0, 41.0]]),
        np.array([50.0, 60.0]),
        np.array([[65, 80], [35, 80]]),
    )
    assert points[:, 0].tolist() == [30.0, 70.0, 50.0, 35.0, 65.0]


# --- alignment and encoding ----------------------------------------------------------------------


def test_the_largest_upright_rect_fits_inside_the_rotated_image() -> None:
    assert largest_upright_rect(800, 600, 0.0) == pytest.approx((800, 600))
    for degrees in (3.0, 10.0, -25.0):
        w, h = largest_upright_rect(800, 600, degrees)
        angle = math.radians(degrees)
        # Its corners, rotated back into the original frame, lie inside it.
        for cx, cy in ((w / 2, h / 2), (w / 2, -h / 2)):
            x = abs(cx * math.cos(angle) - cy * math.sin(angle))
            y = abs(cx * math.sin(angle) + cy * math.cos(angle))
            assert x <= 400 + 1e-6
            assert y <= 300 + 1e-6


def test_a_tilted_face_is_levelled_and_its_landmarks_follow() -> None:
    pixels = np.asarray(ASTRONAUT.resize((1000, 1000)), dtype=np.uint8)
    tilted = face(350, 250, 300)
    angle = math.radians(12)
    centre = np.array([500.0, 500.0])
    rotation = np.array([[math.cos(angle), -math.sin(angle)], [math.sin(angle), math.cos(angle)]])
    tilted = DetectedFace(tilted.box, 0.9, (tilted.landmarks - centre) @ rotation.T + centre)
    assert roll_of(tilted) == pytest.approx(12.0)
    levelled, moved, degrees = level_eyes(pixels, tilted)
    assert degrees == pytest.approx(12.0)
    assert abs(roll_of(moved)) < 0.01
    height, width = levelled.shape[:2]
    assert (width, height) < (1000, 1000)  # cropped to leave no blank corners
    x, y, w, h = moved.box
    assert x >= 0
    assert x + w <= width
    assert y >= 0
    assert y + h <= height


def test_level_eyes_leave_the_image_alone() -> None:
    pixels = np.asarray(ASTRONAUT, dtype=np.uint8)
    straight = face(150, 60, 110)
    same, unchanged, degrees = level_eyes(pixels, straight)
    assert same is pixels
    assert unchanged is straight
    assert degrees == 0.0


def test_portraits_are_at_most_800_wide_jpeg_quality_85_without_metadata() -> None:
    big = np.asarray(ASTRONAUT.resize((1600, 1600)), dtype=np.uint8)
    main = face(500, 160, 400)
    portrait = align_portrait(big, main)
    assert (portrait.width, portrait.height) == (800, 800)
    stored = Image.open(io.BytesIO(portrait.jpeg))
    assert stored.format == "JPEG"
    assert stored.size == (800, 800)
    assert not stored.getexif()
    reference = Image.open(io.BytesIO(encoded(stored.convert("RGB"), quality=JPEG_QUALITY)))
    assert isinstance(stored, JpegImageFile)
    assert isinstance(reference, JpegImageFile)
    assert stored.quantization == reference.quantization  # the quality-85 tables
    # Everything scaled by one half.
    assert portrait.face.box == pytest.approx((250, 80, 200, 200))
    assert portrait.face.landmarks == pytest.approx(main.landmarks / 2)


def test_small_portraits_are_not_enlarged() -> None:
    portrait = align_portrait(np.asarray(ASTRONAUT, dtype=np.uint8), face(150, 60, 110))
    assert (portrait.width, portrait.height) == (512, 512)


def test_very_tall_images_are_cropped_around_the_face() -> None:
    tall = np.zeros((9000, 1000, 3), dtype=np.uint8)
    portrait = align_portrait(tall, face(300, 6000, 400))
    assert portrait.width == 800
    assert portrait.height <= 4096
    _x, y, _w, h = portrait.face.box
    assert y >= 0
    assert y + h <= portrait.height


# --- the store -----------------------------------------------------------------------------------


def test_the_filesystem_store_writes_atomically_readable_files(tmp_path: Path) -> None:
    store = FilesystemStore(tmp_path)
    key = image_key("acme", "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3")
    assert store.put(key, b"jpeg bytes") == key == "acme/av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3.jpg"
    assert store.get(key) == b"jpeg bytes"
    assert (tmp_path / key).stat().st_mode & 0o444 == 0o444
    assert [p.name for p in (tmp_path / "acme").iterdir()] == [Path(key).name]  # no temp files
    store.delete(key)
    store.delete(key)  # gone already is fine
    assert store.get(key) is None


@pytest.mark.parametrize(
    "key", ["../etc/passwd", "acme/../../x.jpg", "/abs/av_1.jpg", "acme/av_1.png", "acme/a/b.jpg"]
)
def test_the_store_refuses_keys_that_leave_it(tmp_path: Path, key: str) -> None:
    with pytest.raises(ValueError, match="not a valid image key"):
        FilesystemStore(tmp_path).put(key, b"x")
