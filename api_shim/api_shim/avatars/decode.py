"""Bytes -> RGB pixels, refusing whatever is not a complete, reasonably sized photo.

The header is read first and the pixel count checked before anything is decompressed, so a
small file that claims to be gigapixels (a decompression bomb) costs nothing. EXIF orientation is
applied, transparency is flattened onto white, and the result is always 8-bit RGB.
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
MIN_SIDE = 64
ALLOWED_FORMATS = frozenset({"JPEG", "PNG", "WEBP"})
CONTENT_TYPES = {"JPEG": "image/jpeg", "PNG": "image/png", "WEBP": "image/webp"}
# JPEGs much larger than needed are decoded at 1/2, 1/4 or 1/8 scale straight from the DCT
# coefficients (fast); the shorter side stays at least this long, enough for an 800 px output
# even after the eye-levelling crop.
DRAFT_MIN_SIDE = 1024

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
        if fmt == "JPEG" and min(width, height) >= 2 * DRAFT_MIN_SIDE:
            scale = DRAFT_MIN_SIDE / min(width, height)
            image.draft("RGB", (math.ceil(width * scale), math.ceil(height * scale)))
        pixels = _load(image)
    return DecodedImage(pixels, fmt)


def _load(image: Image.Image) -> RGB:
    try:
        image.load()
        upright = ImageOps.exif_transpose(image)
        rgb = _flatten(upright)
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
    return np.asarray(rgb, dtype=np.uint8).copy()


def _flatten(image: Image.Image) -> Image.Image:
    """8-bit RGB; anything transparent is put on white (a portrait cut-out stays a portrait)."""
    if image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info):
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")
