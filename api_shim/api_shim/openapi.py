"""The OpenAPI document: FastAPI's, plus what it cannot know (X-Request-Id on every response)."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI
from fastapi.openapi.utils import get_openapi

from api_shim.middleware import REQUEST_ID_HEADER

DESCRIPTION = """\
Real-time talking-avatar sessions in your own LiveKit room (Daily rooms: not yet).

Authenticate with `x-api-key: fc_...` or `Authorization: Bearer fc_...`. Every error is
`{"error": {"type", "code", "message", "param", "request_id"}}`, and every response carries
`X-Request-Id` (yours, if you send a valid one). POSTs accept an `Idempotency-Key`.
"""

_REQUEST_ID = {
    "description": "The id of this request (the one you sent, if valid; else `req_<ULID>`).",
    "schema": {"type": "string"},
}


def build_openapi(app: FastAPI) -> dict[str, Any]:
    document = get_openapi(
        title=app.title,
        version=app.version,
        description=DESCRIPTION,
        routes=app.routes,
        tags=app.openapi_tags,
    )
    for path in document.get("paths", {}).values():
        for operation in path.values():
            for response in operation.get("responses", {}).values():
                response.setdefault("headers", {})[REQUEST_ID_HEADER] = _REQUEST_ID
    return document
