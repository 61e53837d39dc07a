"""/v1/avatars: upload a face (multipart file, or JSON with a URL or base64), read, list,
delete."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Annotated, Any

from fastapi import APIRouter, Path, Query, Request, Response
from pydantic import BaseModel, ValidationError
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException as StarletteHTTPException

from api_shim.avatars.decode import MAX_IMAGE_BYTES, check_size
from api_shim.avatars.pipeline import ImageSource
from api_shim.avatars.problems import ImageRejectedError
from api_shim.avatars.schemas import (
    AVATAR_ID_PATTERN,
    MULTIPART_SCHEMA,
    AvatarList,
    AvatarOptions,
    AvatarView,
    CreateAvatarJson,
)
from api_shim.deps import IdempotencyKeyDep, PrincipalDep, ServicesDep
from api_shim.errors import (
    ApiError,
    BodyRefusedError,
    ErrorType,
    invalid_request,
    validation_error,
)
from api_shim.routes.common import error_responses

router = APIRouter(prefix="/v1/avatars", tags=["avatars"])

REPLAYED_HEADER = "Idempotent-Replayed"
AvatarId = Annotated[
    str, Path(description="An `av_...` id.", examples=["av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"])
]
FORM_FIELDS = frozenset({"file", "visibility", "display_name"})

_CREATE_DESCRIPTION = """\
Makes an avatar from one portrait photo: as a `multipart/form-data` upload (`file`), or as JSON
with `image_url` (fetched by the API from a public address) or `image_base64` (a data URI).
JPEG, PNG or WebP, at most 10 MB.

The photo must show exactly one clearly visible face that fills a prominent part of the frame;
otherwise 400 with `no_face_detected`, `multiple_faces_detected`, `face_too_small` or
`face_not_clear`. Unreadable input is 400 `not_an_image`, `unsupported_image_format`,
`image_truncated`, `image_corrupt`, `image_dimensions_too_large` or `image_too_small`; an
oversize one 413 `image_too_large`. URLs: 400 `invalid_image_url`, `image_url_forbidden`
(private, loopback, link-local or otherwise non-public addresses), `image_fetch_failed`.

The accepted image is turned upright (EXIF), rotated so the eyes are level, scaled to at most
800 px wide and stored as JPEG (quality 85, no metadata); `face` describes the stored image.
"""


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


async def _from_form(request: Request) -> tuple[ImageSource, AvatarOptions]:
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
    return ImageSource.file(data), options


async def _from_json(request: Request) -> tuple[ImageSource, AvatarOptions]:
    raw = await request.body()
    try:
        body: CreateAvatarJson = CreateAvatarJson.model_validate_json(raw)
    except ValidationError as error:
        raise _body_errors(error) from None
    options = AvatarOptions(visibility=body.visibility, display_name=body.display_name)
    if body.image_url is not None:
        return ImageSource.url(body.image_url), options
    return ImageSource.data_uri(body.image_base64 or ""), options


@router.post(
    "",
    status_code=201,
    summary="Create an avatar (upload a face)",
    description=_CREATE_DESCRIPTION,
    responses=error_responses(400, 401, 409, 413, 429),
    openapi_extra={
        "requestBody": {
            "required": True,
            "content": {
                "multipart/form-data": {"schema": MULTIPART_SCHEMA},
                "application/json": {"schema": CreateAvatarJson.model_json_schema()},
            },
        }
    },
)
async def create_avatar(
    request: Request,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKeyDep,
) -> AvatarView:
    content_type = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if content_type == "multipart/form-data":
        source, options = await _from_form(request)
    elif content_type in ("application/json", ""):
        source, options = await _from_json(request)
    else:
        raise ApiError(
            ErrorType.INVALID_REQUEST,
            "unsupported_content_type",
            "Send multipart/form-data (a file) or application/json (image_url or image_base64).",
            param="Content-Type",
        )
    created = await services.avatars.create(
        principal,
        source,
        visibility=options.visibility,
        display_name=options.display_name,
        idempotency_key=key,
    )
    if created.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return created.avatar


@router.get(
    "",
    summary="List avatars",
    description="Yours and every public one, newest first. Follow `next_cursor` while `has_more`.",
    responses=error_responses(400, 401, 429),
)
async def list_avatars(
    principal: PrincipalDep,
    services: ServicesDep,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page.",
            json_schema_extra={"pattern": AVATAR_ID_PATTERN},
        ),
    ] = None,
) -> AvatarList:
    return await services.avatars.list_avatars(principal, limit=limit, cursor=cursor)


@router.get("/{avatar_id}", summary="Get an avatar", responses=error_responses(401, 404, 429))
async def get_avatar(
    avatar_id: AvatarId, principal: PrincipalDep, services: ServicesDep
) -> AvatarView:
    return await services.avatars.get(principal, avatar_id)


@router.delete(
    "/{avatar_id}",
    summary="Delete an avatar",
    description=(
        "Deletes your avatar and its image; the reply is the avatar as it was. 409"
        " `avatar_in_use` while a session that has not finished uses it."
    ),
    responses=error_responses(401, 404, 409, 429),
)
async def delete_avatar(
    avatar_id: AvatarId, principal: PrincipalDep, services: ServicesDep
) -> AvatarView:
    return await services.avatars.delete(principal, avatar_id)
