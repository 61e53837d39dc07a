"""POST /v1/sessions/{id}/viewer-token: another token for a managed room's viewer (the create
answer carries the first one, and tokens are never stored)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from api_shim.schemas import RequestModel, ResponseModel
from api_shim.sessions.schemas import SESSION_ID_PATTERN, Identity


class ViewerTokenRequest(RequestModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"identity": "viewer-2"}]}
    )

    identity: Identity | None = Field(
        default=None,
        description=(
            "The identity the token joins as; omitted: the session's `client_identity`. Two"
            " viewers joining with one identity take each other's place in the room."
        ),
    )


_EXAMPLE: dict[str, Any] = {
    "object": "viewer_token",
    "session_id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
    "url": "wss://livekit.example.com",
    "room_name": "facecast-sess-01jcz3v7m4q8r2t6w9x0y1z2a3",
    "identity": "facecast-client",
    "token": "eyJhbGciOiJIUzI1NiJ9...",
    "can_publish": False,
    "expires_at": "2026-11-21T08:10:05Z",
}


class ViewerToken(ResponseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_EXAMPLE]})

    object: Literal["viewer_token"] = "viewer_token"
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
    url: str = Field(description="The LiveKit URL the viewer joins.")
    room_name: str
    identity: str
    token: str = Field(description="A LiveKit access token for this room only; shown once.")
    can_publish: bool = Field(
        description="Whether it may publish: only if the session was created with"
        " `transport.client_can_publish`; otherwise it may only subscribe."
    )
    expires_at: datetime = Field(
        description="Joining must start before this; LiveKit checks the token only then."
    )
