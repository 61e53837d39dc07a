"""Kaltura Avatar's client-session API as its page gives it: camelCase fields, every answer
`{"success": true, ...}` and every error `{"success": false, "error": "..."}`. The page shows
the create's request and response; the bodies of init-client, say-text, keep-alive and
end-session are not on it, so theirs are our reading (README). Unknown request fields are
ignored, as a drop-in must accept what a client already sends.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

from avatar_crds.speech import SPEAK_TEXT_MAX_CHARS

INVALID_SESSION = "Invalid Kaltura Session"  # the page's 401
NOT_AUTHORIZED = "Kaltura Session not authorized"  # the page's 403
INTERNAL_ERROR = "Internal server error"  # the page's 500


class KalturaModel(BaseModel):
    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True)


class KalturaVisualConfig(KalturaModel):
    avatar_id: Annotated[str, Field(min_length=1)] = Field(
        description="The `av_...` id of one of your avatars (POST /v1/avatars)."
    )


class KalturaVoiceConfig(KalturaModel):
    id: str | None = Field(
        default=None, description="One of GET /v1/voices; omitted: the default voice."
    )
    speed: float | None = Field(
        default=None, description="Speech speed multiplier (1.0 normal); Facecast: 0.5 to 2.0."
    )


class KalturaCreateSession(KalturaModel):
    model_config = ConfigDict(
        alias_generator=to_camel,
        populate_by_name=True,
        json_schema_extra={
            "examples": [
                {
                    "visualConfig": {"avatarId": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"},
                    "voiceConfig": {"id": "espeak:en-us", "speed": 1.0},
                }
            ]
        },
    )

    visual_config: KalturaVisualConfig
    voice_config: KalturaVoiceConfig | None = None


class KalturaSessionCreated(KalturaModel):
    success: Literal[True] = True
    session_id: str = Field(description="The Facecast session id (`sess_...`).")
    token: str = Field(
        description="A JWT for this session's later calls (`Authorization: Bearer <token>`),"
        " valid for this session only, until its longest possible end."
    )


class KalturaWebRtcConfig(KalturaModel):
    provider: Literal["livekit"] = "livekit"
    url: str = Field(description="The LiveKit URL to join.")
    room_name: str
    token: str = Field(description="A LiveKit token for that room, subscribe-only.")
    identity: str
    expires_at: int = Field(description="Unix seconds: join before then.")


class KalturaClientConfig(KalturaModel):
    success: Literal[True] = True
    session_id: str
    webrtc_config: KalturaWebRtcConfig


class KalturaSayText(KalturaModel):
    text: Annotated[str, Field(min_length=1, max_length=SPEAK_TEXT_MAX_CHARS)] = Field(
        description=f"What the avatar says: 1 to {SPEAK_TEXT_MAX_CHARS} characters."
    )


class KalturaTextQueued(KalturaModel):
    success: Literal[True] = True
    task_id: str = Field(description="Facecast's speak task (`spk_...`, GET /v1 shows it).")


class KalturaOk(KalturaModel):
    success: Literal[True] = True


class KalturaError(BaseModel):
    success: Literal[False] = False
    error: str


def error_body(message: str) -> dict[str, object]:
    return KalturaError(error=message).model_dump(mode="json")
