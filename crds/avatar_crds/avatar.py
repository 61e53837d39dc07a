"""Avatar: a validated, aligned portrait that sessions refer to by name. Immutable once made."""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import ConfigDict, Field, model_validator

from avatar_crds.cel import IMMUTABLE, Rule, rules
from avatar_crds.enums import Visibility
from avatar_crds.meta import API_VERSION, CamelModel, ObjectMeta
from avatar_crds.session import DNS_LABEL

MAX_IMAGE_WIDTH = 800
MAX_IMAGE_HEIGHT = 4096

Pixels = Annotated[float, Field(ge=0, le=MAX_IMAGE_HEIGHT)]


class StoredImage(CamelModel):
    """Where the aligned JPEG lives in the avatar store, and what it is."""

    uri: Annotated[str, Field(min_length=1, max_length=1024)]
    width: Annotated[int, Field(ge=1, le=MAX_IMAGE_WIDTH)]
    height: Annotated[int, Field(ge=1, le=MAX_IMAGE_HEIGHT)]
    content_type: Literal["image/jpeg"] = "image/jpeg"
    sha256: Annotated[str, Field(pattern=r"^[0-9a-f]{64}$")]
    size_bytes: Annotated[int, Field(ge=1, le=10 * 1024 * 1024)]


class Box(CamelModel):
    x: Pixels
    y: Pixels
    width: Annotated[float, Field(gt=0, le=MAX_IMAGE_HEIGHT)]
    height: Annotated[float, Field(gt=0, le=MAX_IMAGE_HEIGHT)]


class Point(CamelModel):
    x: Pixels
    y: Pixels


class Face(CamelModel):
    """The one face found in the image, in the stored image's pixel coordinates."""

    box: Box
    landmarks: list[Point] = Field(
        min_length=5,
        max_length=106,
        description="Eyes, nose tip and mouth corners first; denser detectors may add more.",
    )
    score: Annotated[float, Field(ge=0, le=1)]
    detector: Annotated[str, Field(min_length=1, max_length=64)]


_FACE_INSIDE_IMAGE = Rule(
    "self.face.box.x + self.face.box.width <= double(self.image.width)"
    " && self.face.box.y + self.face.box.height <= double(self.image.height)",
    "the face box must lie inside the image",
)


class AvatarSpec(CamelModel):
    model_config = ConfigDict(json_schema_extra=rules(_FACE_INSIDE_IMAGE, IMMUTABLE))

    tenant: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    visibility: Visibility = Visibility.TENANT
    display_name: Annotated[str, Field(max_length=128)] | None = None
    image: StoredImage
    face: Face

    @model_validator(mode="after")
    def _face_inside_image(self) -> AvatarSpec:
        box = self.face.box
        if box.x + box.width > self.image.width or box.y + box.height > self.image.height:
            raise ValueError(_FACE_INSIDE_IMAGE.message)
        return self


class Avatar(CamelModel):
    model_config = ConfigDict(extra="ignore")

    api_version: Literal["facecast.io/v1alpha1"] = API_VERSION
    kind: Literal["Avatar"] = "Avatar"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AvatarSpec
