"""Public models of /v1/avatars and of the inline `avatar` of POST /v1/sessions. Self-contained
JSON schemas (no shared definitions), so that they can be published for both request content
types of POST /v1/avatars."""

from __future__ import annotations

import math
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, WithJsonSchema, model_validator

from api_shim.avatars.decode import MAX_IMAGE_BYTES
from api_shim.avatars.fetch import MAX_URL_LENGTH
from avatar_crds.ids import AVATAR_PREFIX, public_id_pattern

AVATAR_ID_PATTERN = public_id_pattern(AVATAR_PREFIX)
# base64 of the largest image, plus room for a `data:image/jpeg;base64,` prefix.
MAX_BASE64_LENGTH = math.ceil(MAX_IMAGE_BYTES / 3) * 4 + 64

VisibilityName = Literal["public", "tenant"]
DisplayName = Annotated[str, Field(min_length=1, max_length=128)]
# No spaces or control characters, spelled out: `\S` means a different set in JSON Schema's
# regex dialect (ECMA-262), in Python's and in the API's (Rust's), which disagree about
# U+0085 and U+001C-U+001F.
URL_PATTERN = r"^[Hh][Tt][Tt][Pp][Ss]?://[^\x00-\x20\x7f-\x9f]+$"
URL_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_URL_LENGTH,
    "pattern": URL_PATTERN,
    "description": (
        "A public http(s) URL; fetched once by the API (at most 10 MB, 10 seconds,"
        " 3 redirects, ports 80/443/8080/8443, public addresses only)."
    ),
}
BASE64_SCHEMA: dict[str, Any] = {
    "type": "string",
    "minLength": 1,
    "maxLength": MAX_BASE64_LENGTH,
    "description": "`data:image/jpeg;base64,...` (or bare base64) of a JPEG, PNG or WebP.",
}
# Optional in Python, but when given never null: the documents say "one of these keys".
ImageUrl = Annotated[
    str | None,
    Field(min_length=1, max_length=MAX_URL_LENGTH, pattern=URL_PATTERN),
    WithJsonSchema(URL_SCHEMA),
]
ImageBase64 = Annotated[
    str | None,
    Field(min_length=1, max_length=MAX_BASE64_LENGTH),
    WithJsonSchema(BASE64_SCHEMA),
]


def exactly_one_of(*names: str) -> dict[str, Any]:
    """JSON Schema for "exactly one of these keys is present"."""
    return {"oneOf": [{"required": [name]} for name in names]}


_VISIBILITY_DESCRIPTION = "`tenant`: only your API keys may use it; `public`: every tenant may."


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


def exactly_one_given(model: BaseModel, names: tuple[str, str], what: str) -> None:
    """One of `names` present, and not null (null is not "absent" here)."""
    given = [name for name in names if name in model.model_fields_set]
    if len(given) != 1 or getattr(model, given[0]) is None:
        raise ValueError(f"{what} needs exactly one of {names[0]} or {names[1]}, not null")


def _one_image(model: BaseModel, what: str) -> None:
    exactly_one_given(model, ("image_url", "image_base64"), what)


class CreateAvatarJson(_Strict):
    """POST /v1/avatars as JSON: the image by URL or as base64."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"image_url": "https://example.com/portrait.jpg", "visibility": "tenant"}],
            **exactly_one_of("image_url", "image_base64"),
        },
    )

    image_url: ImageUrl = None
    image_base64: ImageBase64 = None
    visibility: VisibilityName = Field(default="tenant", description=_VISIBILITY_DESCRIPTION)
    display_name: DisplayName | None = None

    @model_validator(mode="after")
    def _exactly_one(self) -> CreateAvatarJson:
        _one_image(self, "the request")
        return self


class AvatarOptions(_Strict):
    """The form fields of a multipart upload besides `file`."""

    visibility: VisibilityName = "tenant"
    display_name: DisplayName | None = None


MULTIPART_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["file"],
    "properties": {
        "file": {
            "type": "string",
            "format": "binary",
            "description": "The portrait: JPEG, PNG or WebP, at most 10 MB.",
        },
        "visibility": {
            "type": "string",
            "enum": ["public", "tenant"],
            "default": "tenant",
            "description": _VISIBILITY_DESCRIPTION,
        },
        "display_name": {"type": "string", "minLength": 1, "maxLength": 128},
    },
    "additionalProperties": False,
}


class InlineAvatar(_Strict):
    """An image to make the session's avatar from, instead of an `avatar_id`. Your plan must
    allow URL (or base64) avatars; the image goes through the same checks as POST /v1/avatars
    and becomes one of your avatars (its id is the session's `avatar_id`)."""

    model_config = ConfigDict(
        extra="forbid", json_schema_extra=exactly_one_of("image_url", "image_base64")
    )

    image_url: ImageUrl = None
    image_base64: ImageBase64 = None

    @model_validator(mode="after")
    def _exactly_one(self) -> InlineAvatar:
        _one_image(self, "avatar")
        return self


# --- responses ---------------------------------------------------------------------------------


class _View(BaseModel):
    model_config = ConfigDict(extra="forbid")


class AvatarBox(_View):
    x: float
    y: float
    width: float
    height: float


class AvatarPoint(_View):
    x: float
    y: float


class AvatarFace(_View):
    box: AvatarBox = Field(description="In the stored image's pixels.")
    landmarks: list[AvatarPoint] = Field(
        description="Left eye, right eye, nose tip, left and right mouth corner (image left"
        " and right), then any further points the detector gives."
    )
    score: float
    detector: str


class AvatarImage(_View):
    width: int = Field(description="At most 800.")
    height: int
    content_type: Literal["image/jpeg"] = "image/jpeg"
    sha256: str
    size_bytes: int


_AVATAR_EXAMPLE: dict[str, Any] = {
    "id": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
    "object": "avatar",
    "visibility": "tenant",
    "display_name": "Support agent",
    "owned": True,
    "image": {
        "width": 600,
        "height": 800,
        "content_type": "image/jpeg",
        "sha256": "9f2c" + "0" * 60,
        "size_bytes": 61234,
    },
    "face": {
        "box": {"x": 190.0, "y": 150.0, "width": 220.0, "height": 250.0},
        "landmarks": [
            {"x": 250.0, "y": 240.0},
            {"x": 350.0, "y": 240.0},
            {"x": 300.0, "y": 300.0},
            {"x": 262.0, "y": 345.0},
            {"x": 338.0, "y": 345.0},
        ],
        "score": 0.93,
        "detector": "blazeface+facemesh",
    },
    "created_at": "2026-11-21T08:00:00Z",
}


class AvatarView(_View):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_AVATAR_EXAMPLE]})

    id: Annotated[str, Field(pattern=AVATAR_ID_PATTERN)]
    object: Literal["avatar"] = "avatar"
    visibility: VisibilityName
    display_name: str | None
    owned: bool = Field(description="Whether it is yours (others' public avatars are listed too).")
    image: AvatarImage
    face: AvatarFace
    created_at: datetime | None


class AvatarList(_View):
    object: Literal["list"] = "list"
    data: list[AvatarView]
    has_more: bool
    next_cursor: Annotated[str, Field(pattern=AVATAR_ID_PATTERN)] | None = Field(
        description="Pass as `cursor` to get the next page (the id of this page's last avatar)."
    )
