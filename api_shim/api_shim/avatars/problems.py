"""Why an image was refused: one stable error code per reason, so clients can tell a group photo
from a blurry one without parsing messages."""

from __future__ import annotations

from enum import StrEnum

from api_shim.errors import ApiError, ErrorType


class Rejection(StrEnum):
    # The bytes.
    IMAGE_TOO_LARGE = "image_too_large"  # 413: more than the byte limit
    NOT_AN_IMAGE = "not_an_image"
    UNSUPPORTED_IMAGE_FORMAT = "unsupported_image_format"
    IMAGE_TRUNCATED = "image_truncated"
    IMAGE_CORRUPT = "image_corrupt"
    IMAGE_DIMENSIONS_TOO_LARGE = "image_dimensions_too_large"  # decompression bombs
    IMAGE_TOO_SMALL = "image_too_small"
    # Where they came from.
    INVALID_DATA_URI = "invalid_data_uri"
    INVALID_IMAGE_URL = "invalid_image_url"
    IMAGE_URL_FORBIDDEN = "image_url_forbidden"  # private, loopback, metadata, ... addresses
    IMAGE_FETCH_FAILED = "image_fetch_failed"
    # The face.
    NO_FACE_DETECTED = "no_face_detected"
    MULTIPLE_FACES_DETECTED = "multiple_faces_detected"
    FACE_TOO_SMALL = "face_too_small"
    FACE_NOT_CLEAR = "face_not_clear"


class ImageRejectedError(ApiError):
    """A 400 (413 for size) naming the input field; raised by pure code, rendered by the app."""

    def __init__(self, code: Rejection, message: str, *, param: str | None = None) -> None:
        status = 413 if code is Rejection.IMAGE_TOO_LARGE else 400
        super().__init__(ErrorType.INVALID_REQUEST, str(code), message, param=param, status=status)
        self.rejection = code

    def for_param(self, param: str) -> ImageRejectedError:
        """The same refusal, naming the field the image came in."""
        return ImageRejectedError(self.rejection, self.message, param=param)
