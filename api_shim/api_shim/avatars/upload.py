"""The body of POST /v1/avatars, parsed by a FastAPI dependency: a `multipart/form-data` upload
(`file` and the options as form fields) or JSON (`image_url` or `image_base64`). The route
declares no body parameter, so FastAPI reads nothing itself and the document's request body is
`REQUEST_BODY`, written next to the parser it describes."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Annotated, Any

from fastapi import Depends, Request
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api_shim.avatars.decode import MAX_IMAGE_BYTES, check_size
from api_shim.avatars.pipeline import ImageSource
from api_shim.avatars.problems import ImageRejectedError
from api_shim.avatars.schemas import MULTIPART_SCHEMA, AvatarOptions, CreateAvatarJson
from api_shim.errors import (
    ApiError,
    BodyRefusedError,
    ErrorType,
    invalid_request,
    validation_error,
)

FORM_FIELDS = frozenset({"file", "visibility", "display_name"})

# The route's `openapi_extra["requestBody"]`: both media types, as `avatar_upload` parses them.
REQUEST_BODY: dict[str, Any] = {
    "required": True,
    "content": {
        "multipart/form-data": {"schema": MULTIPART_SCHEMA},
        "application/json": {"schema": CreateAvatarJson.model_json_schema()},
    },
}


@dataclass(frozen=True)
class AvatarUpload:
    source: ImageSource
    options: AvatarOptions


async def avatar_upload(request: Request) -> AvatarUpload:
    """The image and options of the request, by its Content-Type (none: JSON)."""
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        return await _from_form(request)
    if content_type in ("application/json", ""):
        return await _from_json(request)
    raise ApiError(
        ErrorType.INVALID_REQUEST,
        "unsupported_content_type",
        "Send multipart/form-data (a file) or application/json (image_url or image_base64).",
        param="Content-Type",
    )


AvatarUploadDep = Annotated[AvatarUpload, Depends(avatar_upload)]


def _body_errors(error: ValidationError) -> ApiError:
    """Pydantic errors of a body we parsed ourselves, located like FastAPI's."""
    errors: Sequence[Mapping[str, Any]] = [
        {**e, "loc": ("body", *e.get("loc", ()))} for e in error.errors(include_url=False)
    ]
    return validation_error(errors)


def _validate(model: type[BaseModel], data: Any) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as error:
        raise _body_errors(error) from None


async def _from_form(request: Request) -> AvatarUpload:
    try:
        async with request.form(max_files=1, max_fields=len(FORM_FIELDS)) as form:
            unknown = sorted(set(form.keys()) - FORM_FIELDS)
            if unknown:
                raise invalid_request(
                    "unknown_parameter", f"{unknown[0]}: unknown form field", param=unknown[0]
                )
            upload = form.get("file")
            if not isinstance(upload, UploadFile):
                raise invalid_request(
                    "parameter_missing", "file: a file part named `file` is required", "file"
                )
            fields = {k: v for k, v in form.items() if k != "file" and isinstance(v, str)}
            options: AvatarOptions = _validate(AvatarOptions, fields)
            data = await upload.read(MAX_IMAGE_BYTES + 1)
    except StarletteHTTPException as error:
        if isinstance(error, BodyRefusedError):  # the body size limit, not a malformed form
            raise
        raise invalid_request(
            "invalid_multipart", f"The form is not valid: {error.detail}"
        ) from None
    try:
        check_size(data)
    except ImageRejectedError as error:
        raise error.for_param("file") from None
    return AvatarUpload(ImageSource.file(data), options)


async def _from_json(request: Request) -> AvatarUpload:
    raw = await request.body()
    try:
        body: CreateAvatarJson = CreateAvatarJson.model_validate_json(raw)
    except ValidationError as error:
        raise _body_errors(error) from None
    options = AvatarOptions(visibility=body.visibility, display_name=body.display_name)
    if body.image_url is not None:
        return AvatarUpload(ImageSource.url(body.image_url), options)
    return AvatarUpload(ImageSource.data_uri(body.image_base64 or ""), options)
