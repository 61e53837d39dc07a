"""Protoface's `POST /v1/sessions` and session resource, as its documentation gives them. Its
error envelope is Facecast's own (`api_shim.errors.ErrorEnvelope`): same fields, same types.

Unknown request fields are ignored, as Protoface's published schema allows them.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, WithJsonSchema

from api_shim.avatars.schemas import AVATAR_ID_PATTERN
from api_shim.sessions.schemas import WHOLE_NUMBER, LiveKitTransportView, StrictBool
from avatar_crds.capabilities import RENDERABLE_QUALITIES
from avatar_crds.enums import AudioSource, Phase, Quality
from avatar_crds.session import Metadata

DEFAULT_WORKER_IDENTITY = "protoface-worker"
DEFAULT_QUALITY = Quality.STANDARD
Identity = Annotated[str, Field(min_length=1, max_length=128)]
_RENDERABLE = [str(tier) for tier in Quality if tier in RENDERABLE_QUALITIES]


class ProtofaceLiveKitTransport(BaseModel):
    """BYO LiveKit: the customer owns the room and mints `worker_token`."""

    # Any string is parsed, so that another type (`pipecat`, `daily`) is refused as Protoface
    # does, `transport.unsupported`; the document lists the one Facecast has.
    type: Annotated[
        str, WithJsonSchema({"type": "string", "enum": ["livekit"], "default": "livekit"})
    ] = "livekit"
    url: str = Field(description="The LiveKit server, e.g. `wss://my-app.livekit.cloud`.")
    room_name: str
    worker_token: Annotated[SecretStr, Field(min_length=1)] = Field(
        description="Write-only: never returned (reads show `[redacted]`) or logged."
    )
    worker_identity: Identity = DEFAULT_WORKER_IDENTITY
    audio_source: AudioSource = AudioSource.DATA_STREAM
    subscribe_to_identity: Identity | None = None
    synthetic_audio_if_no_input: StrictBool = False


class ProtofaceCreateSession(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "avatar_id": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
                    "idle_timeout_seconds": 30,
                    "max_duration_seconds": 600,
                    "metadata": {"customer_session_id": "abc123"},
                    "quality": "lite",
                    "transport": {
                        "room_name": "demo-room",
                        "type": "livekit",
                        "url": "wss://my-app.livekit.cloud",
                        "worker_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
                    },
                }
            ]
        }
    )

    avatar_id: Annotated[str, Field(pattern=AVATAR_ID_PATTERN)]
    idle_timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=600), WHOLE_NUMBER] = 30
    max_duration_seconds: Annotated[int, Field(strict=True, ge=1, le=3600), WHOLE_NUMBER] = 600
    metadata: Metadata = Field(default_factory=dict)
    # Protoface's default; an installation without the model weights refuses it (422), naming
    # the tiers it serves.
    quality: Annotated[Quality, WithJsonSchema({"type": "string", "enum": _RENDERABLE})] = (
        DEFAULT_QUALITY
    )
    transport: ProtofaceLiveKitTransport


class ProtofaceFailure(BaseModel):
    code: str
    message: str


class ProtofaceUsageView(BaseModel):
    billable_seconds: int
    frames: int


class ProtofaceSessionView(BaseModel):
    id: str
    object: Literal["session"] = "session"
    avatar_id: str
    status: Phase
    quality: Quality
    transport: LiveKitTransportView  # /v1's own view: the same fields, the token redacted
    idle_timeout_seconds: int | None
    max_duration_seconds: int
    metadata: dict[str, Any]
    created_at: datetime
    started_at: datetime | None
    first_frame_at: datetime | None
    ended_at: datetime | None
    failed_at: datetime | None
    failure: ProtofaceFailure | None
    usage: ProtofaceUsageView
