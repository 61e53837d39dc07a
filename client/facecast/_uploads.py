"""POST /v1/avatars in either of its forms: a multipart upload of a file, or JSON with a URL or
base64 data."""

from __future__ import annotations

from pathlib import Path
from typing import IO

from facecast import operations as ops
from facecast._calls import Call, prepare
from facecast.models import AVATAR_FILE_FIELD, Avatar, CreateAvatarRequest, Visibility


def avatar_call(
    *,
    file: bytes | Path | IO[bytes] | None,
    image_url: str | None,
    image_base64: str | None,
    visibility: Visibility | None,
    display_name: str | None,
    filename: str,
    idempotency_key: str | None,
) -> Call[Avatar]:
    given = [
        name
        for name, v in (("file", file), ("image_url", image_url), ("image_base64", image_base64))
        if v is not None
    ]
    if len(given) != 1:
        raise ValueError("give exactly one of file, image_url or image_base64")
    if file is not None:
        # Read once, up front: a retry sends the same bytes again.
        if isinstance(file, Path):
            content, filename = file.read_bytes(), file.name
        elif isinstance(file, bytes):
            content = file
        else:
            content = file.read()
        options = {"visibility": visibility, "display_name": display_name}
        return prepare(
            ops.CREATE_AVATAR,
            data=options,
            files={AVATAR_FILE_FIELD: (filename, content)},
            idempotency_key=idempotency_key,
        )
    fields = {
        "image_url": image_url,
        "image_base64": image_base64,
        "visibility": visibility,
        "display_name": display_name,
    }
    request = CreateAvatarRequest.model_validate({k: v for k, v in fields.items() if v is not None})
    return prepare(ops.CREATE_AVATAR, json=request.wire(), idempotency_key=idempotency_key)
