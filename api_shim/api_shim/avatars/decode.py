"""Bytes -> RGB pixels, refusing whatever is not a complete, reasonably sized photo.

The header is read first, and the pixel count and what decoding would cost in memory are
checked before anything is decompressed, so a small file that claims to be gigapixels (a
decompression bomb) costs nothing. EXIF orientation is applied, transparency is flattened onto
white, images much larger than the pipeline needs are scaled down as early as possible, and the
result is always 8-bit RGB.
"""

from __future__ import annotations

import base64
import binascii
import io
import math
import re
import warnings
from dataclasses import dataclass

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from api_shim.avatars.faces import RGB
from api_shim.avatars.problems import ImageRejectedError, Rejection

MAX_IMAGE_BYTES = 10 * 1024 * 1024
MAX_PIXELS = 40_000_000  # a 40-megapixel photo decodes to 120 MB of RGB; more is refused
# What one decode may cost in memory at its peak, estimated from the header (decode_cost): the
# API pod's memory limit must hold one of these per avatar thread. A JPEG is decoded at reduced
# scale (draft), so a 40-megapixel baseline JPEG costs ~20 MB (a progressive one more: about
# 35 megapixels fit); PNG and WebP are decoded at full size, which allows about 16 megapixels
# (4096x4096) of PNG and 7 of WebP.
MAX_DECODE_BYTES = 128 * 2**20
MIN_SIDE = 64
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# JPEGs much larger than needed are decoded at 1/2, 1/4 or 1/8 scale straight from the DCT
# coefficients (fast); the shorter side stays at least this long, enough for an 800 px output
# even after the eye-levelling crop.
DRAFT_MIN_SIDE = 1024
ARRAY_STRIP_ROWS = 256

_DATA_URI = re.compile(
    r"^data:(?P<type>image/[a-z0-9.+-]+)?(?:;[a-z0-9-]+=[^;,]*)*;base64,(?P<data>.*)$",
    re.IGNORECASE | re.DOTALL,
)


@dataclass(frozen=True)
class DecodedImage:
    pixels: RGB
    format: str  # JPEG, PNG or WEBP

    @property
    def size(self) -> tuple[int, int]:
        return (int(self.pixels.shape[1]), int(self.pixels.shape[0]))


def check_size(data: bytes, limit: int = MAX_IMAGE_BYTES) -> None:
    if len(data) > limit:
        raise ImageRejectedError(
            Rejection.IMAGE_TOO_LARGE,
            f"The image is {len(data)} bytes; the limit is {limit} bytes ({limit // 2**20} MB).",
        )
    if not data:
        raise ImageRejectedError(Rejection.NOT_AN_IMAGE, "The image is empty.")


def parse_data_uri(value: str, limit: int = MAX_IMAGE_BYTES) -> bytes:
    """`data:image/jpeg;base64,...` (or bare base64) -> bytes, refusing oversize payloads
    before decoding them."""
    match = _DATA_URI.match(value.strip())
    payload = match["data"] if match else value
    if not match and value.lstrip().lower().startswith("data:"):
        raise ImageRejectedError(
            Rejection.INVALID_DATA_URI, "Expected data:image/<type>;base64,<data>."
        )
    payload = re.sub(r"\s+", "", payload)
    if len(payload) > math.ceil(limit / 3) * 4:
        raise ImageRejectedError(
            Rejection.IMAGE_TOO_LARGE,
            f"The image is larger than {limit} bytes ({limit // 2**20} MB).",
        )
    try:
        data = base64.b64decode(payload, validate=True)
    except (binascii.Error, ValueError):
        raise ImageRejectedError(
            Rejection.INVALID_DATA_URI, "The image is not valid base64."
        ) from None
    check_size(data, limit)
    return data


def decode_image(data: bytes, *, max_pixels: int = MAX_PIXELS) -> DecodedImage:
    check_size(data)
    try:
        with warnings.catch_warnings():
            # Our own pixel limit (below) is stricter than Pillow's bomb warning.
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
    except UnidentifiedImageError:
        raise ImageRejectedError(
            Rejection.NOT_AN_IMAGE, "The file is not an image (JPEG, PNG or WebP)."
        ) from None
    except Image.DecompressionBombError:
        raise ImageRejectedError(
            Rejection.IMAGE_DIMENSIONS_TOO_LARGE,
            f"The image has far more pixels than the {max_pixels} accepted.",
        ) from None
    except (OSError, ValueError, SyntaxError):
        raise ImageRejectedError(Rejection.IMAGE_CORRUPT, "The image cannot be read.") from None
    with image:
        if image.format not in ALLOWED_FORMATS:
            raise ImageRejectedError(
                Rejection.UNSUPPORTED_IMAGE_FORMAT,
                f"{image.format} images are not accepted; send JPEG, PNG or WebP.",
            )
        fmt = str(image.format)
        width, height = image.size
        if width * height > max_pixels:
            raise ImageRejectedError(
                Rejection.IMAGE_DIMENSIONS_TOO_LARGE,
                f"The image is {width}x{height} pixels; at most {max_pixels} pixels are accepted.",
            )
        if min(width, height) < MIN_SIDE:
            raise ImageRejectedError(
                Rejection.IMAGE_TOO_SMALL,
                f"The image is {width}x{height} pixels; both sides must be at least {MIN_SIDE}.",
            )
        draft(image)
        cost = decode_cost(image, (width, height))
        if cost > MAX_DECODE_BYTES:
            raise ImageRejectedError(
                Rejection.IMAGE_DIMENSIONS_TOO_LARGE,
                f"The image is {width}x{height} pixels of {fmt}; decoding it would take"
                f" {cost // 2**20} MB, more than the {MAX_DECODE_BYTES // 2**20} MB accepted."
                " Send a smaller image, or a (baseline) JPEG, which is decoded at reduced scale.",
            )
        pixels = _load(image)
    return DecodedImage(pixels, fmt)


def draft(image: Image.Image) -> None:
    """A JPEG much larger than needed is set to decode at reduced scale (its size changes to
    that scale); other images decode at full size."""
    width, height = image.size
    if image.format == "JPEG" and min(width, height) >= 2 * DRAFT_MIN_SIDE:
        scale = DRAFT_MIN_SIDE / min(width, height)
        image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))


def decode_cost(image: Image.Image, declared: tuple[int, int]) -> int:
    """Bytes that decoding `image` (opened, not loaded; a JPEG already drafted) takes at its
    peak, from its header alone. Measured with VmHWM on Pillow 13 (test_upload_bounds.py):

    - Pillow holds a decoded pixel in 4 bytes (RGB too), and turning it upright or flattening it
      onto white needs a second image of that size for a moment: 8 bytes a decoded pixel;
    - libwebp decodes into a buffer of its own and hands Pillow a copy: 10 more;
    - a progressive JPEG keeps every DCT coefficient of the full-size image (2 bytes each,
      per component, subsampled ones fewer) whatever scale it is decoded at.
    """
    width, height = image.size  # after a JPEG's draft: what is actually decoded
    cost = width * height * 8
    if image.format == "WEBP":
        cost += width * height * 10
    layers: list[tuple[int, int, int, int]] = getattr(image, "layer", [])
    if image.format == "JPEG" and image.info.get("progressive") and layers:
        full = declared[0] * declared[1]
        h_max = max(layer[1] for layer in layers)
        v_max = max(layer[2] for layer in layers)
        samples = sum(layer[1] * layer[2] for layer in layers) / (h_max * v_max)
        cost += math.ceil(full * samples * 2)
    return cost


def _load(image: Image.Image) -> RGB:
    try:
        image.load()
        # In place: a copy of a large image is what this module avoids (decode_cost).
        ImageOps.exif_transpose(image, in_place=True)
        rgb = _shrink(_flatten(image))
        if rgb is not image:
            image.close()  # frees the decoded pixels now, not when the caller lets go
    except OSError as error:
        code = Rejection.IMAGE_TRUNCATED if "truncated" in str(error) else Rejection.IMAGE_CORRUPT
        what = (
            "is truncated (the file ends early)"
            if code is Rejection.IMAGE_TRUNCATED
            else ("cannot be decoded")
        )
        raise ImageRejectedError(code, f"The image {what}.") from None
    except (ValueError, SyntaxError, EOFError, Image.DecompressionBombError):
        raise ImageRejectedError(Rejection.IMAGE_CORRUPT, "The image cannot be decoded.") from None
    pixels = _to_array(rgb)
    rgb.close()
    return pixels


def _to_array(image: Image.Image) -> RGB:
    """Copied over in strips: np.asarray of the whole image would make two full copies (its
    bytes, then a writable array) next to the image."""
    width, height = image.size
    pixels: RGB = np.empty((height, width, 3), dtype=np.uint8)
    for top in range(0, height, ARRAY_STRIP_ROWS):
        bottom = min(top + ARRAY_STRIP_ROWS, height)
        pixels[top:bottom] = np.asarray(image.crop((0, top, width, bottom)), dtype=np.uint8)
    return pixels


def _flatten(image: Image.Image) -> Image.Image:
    """8-bit RGB; anything transparent is put on white (a portrait cut-out stays a portrait).
    At most one image of the same size is made next to `image`."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image
        if image.mode != "RGBA":
            rgba = image.convert("RGBA")
            image.close()
        background = Image.new("RGB", rgba.size, (255, 255, 255))
        background.paste(rgba, mask=rgba)  # the alpha band as the mask: "over" opaque white
        rgba.close()
        return background
    return image if image.mode == "RGB" else image.convert("RGB")


def _shrink(image: Image.Image) -> Image.Image:
    """Images whose shorter side is at least twice DRAFT_MIN_SIDE are reduced by a whole
    factor (box filter), as a JPEG's draft does, so that the rest of the pipeline never holds
    more than it needs."""
    factor = min(image.size) // DRAFT_MIN_SIDE
    if factor < 2:
        return image
    reduced = image.reduce(factor)
    if reduced is not image:
        image.close()
    return reduced
