"""/v1/avatars: upload a face (multipart file, or JSON with a URL or base64), read, list,
delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api_shim.avatars.schemas import AVATAR_ID_PATTERN, AvatarList, AvatarView
from api_shim.avatars.upload import REQUEST_BODY, AvatarUploadDep
from api_shim.deps import IdempotencyKeyDep, PrincipalDep, ServicesDep
from api_shim.routes.common import error_responses

router = APIRouter(prefix="/v1/avatars", tags=["avatars"])

REPLAYED_HEADER = "Idempotent-Replayed"
AvatarId = Annotated[
    str, Path(description="An `av_...` id.", examples=["av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"])
]

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


@router.post(
    "",
    status_code=201,
    summary="Create an avatar (upload a face)",
    description=_CREATE_DESCRIPTION,
    responses=error_responses(400, 401, 409, 413, 429),
    openapi_extra={"requestBody": REQUEST_BODY},
)
async def create_avatar(
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKeyDep,
    body: AvatarUploadDep,
) -> AvatarView:
    created = await services.avatars.create(
        principal,
        body.source,
        visibility=body.options.visibility,
        display_name=body.options.display_name,
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
