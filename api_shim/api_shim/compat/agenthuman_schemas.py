"""AgentHuman's `POST /v1/sessions`, as its documentation gives it: the request fields, the
`{"success", "session", "usage", "message"}` response and an error body in the same spirit.

Unknown request fields are ignored rather than refused: AgentHuman documents no such refusal,
and a working integration may send fields Facecast has no use for.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr

from avatar_crds.enums import AspectRatio
from avatar_crds.session import Metadata

SUCCESS_MESSAGE = "Session created successfully"
# AgentHuman hands out a token for its own servers; Facecast has no such thing to give.
NO_SESSION_TOKEN = "not_used_by_facecast"


class AgentHumanRoom(BaseModel):
    platform: Literal["daily", "livekit"] = Field(description="`livekit` (Daily: not yet).")
    url: Annotated[str, Field(min_length=1, max_length=2048)] = Field(
        description="LiveKit server URL (`wss://`, or `https://`, read as `wss://`)."
    )
    token: Annotated[SecretStr, Field(min_length=1, max_length=8192)] = Field(
        description=(
            "The avatar's access token for the room; a LiveKit token names the room (its"
            " `video.room` claim) and the avatar's identity (`sub`). Never returned or logged."
        )
    )


class AgentHumanCreateSession(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "avatar": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
                    "aspect_ratio": "4:3",
                    "room": {
                        "platform": "livekit",
                        "url": "wss://my-app.livekit.cloud",
                        "token": "eyJhbGciOiJIUzI1NiJ9...",
                    },
                    "metadata": {"user_name": "John Doe"},
                }
            ]
        }
    )

    avatar: Annotated[str, Field(min_length=1)] = Field(
        description=(
            "A Facecast avatar id (`av_...`), or, if your plan allows it, an image URL or a"
            " `data:image/...;base64,...` string (checked for exactly one clear face)."
        )
    )
    aspect_ratio: AspectRatio = AspectRatio.LANDSCAPE
    room: AgentHumanRoom
    metadata: Metadata = Field(default_factory=dict, description="A JSON object; default `{}`.")


class AgentHumanSessionView(BaseModel):
    session_id: str
    status: Literal["started", "ended"]
    session_token: str
    started_at: datetime
    ended_at: datetime | None
    expiration: datetime
    metadata: dict[str, Any]


class AgentHumanConcurrencyView(BaseModel):
    current: int
    max: int
    available: int


class AgentHumanMinutesView(BaseModel):
    total_remaining: float


class AgentHumanUsageView(BaseModel):
    concurrency: AgentHumanConcurrencyView
    minutes: AgentHumanMinutesView


class AgentHumanCreated(BaseModel):
    success: Literal[True] = True
    session: AgentHumanSessionView
    usage: AgentHumanUsageView
    message: str = SUCCESS_MESSAGE


class AgentHumanErrorBody(BaseModel):
    """AgentHuman documents its error statuses but not their body; this mirrors its success
    envelope (`success: false` and a `message`) and adds a stable `error` code, the field at
    fault and the request id."""

    success: Literal[False] = False
    error: str = Field(description="Stable machine-readable code, e.g. `avatar_not_found`.")
    message: str
    param: str | None = Field(description="The request field at fault (`room.url`), if one is.")
    request_id: str
