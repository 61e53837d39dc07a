"""HeyGen Streaming's `streaming.new` and its siblings, as its documentation gives them: every
answer is `{"code", "message", "data"}`, errors included. Unknown request fields are ignored.
"""

from __future__ import annotations

from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from api_shim.sessions.schemas import StrictBool, VideoEncoding

SUCCESS_CODE = 100  # HeyGen's `code` on success
SUCCESS_MESSAGE = "success"
DEFAULT_AVATAR = "default"


class HeyGenQuality(StrEnum):
    HIGH = "high"
    MEDIUM = "medium"
    LOW = "low"


class HeyGenElevenlabsSettings(BaseModel):
    stability: float = 0.75
    similarity_boost: float = 0.75
    style: float = 0.0
    use_speaker_boost: StrictBool = True


class HeyGenVoice(BaseModel):
    voice_id: str | None = None
    rate: float = Field(default=1.0, description="Speed; Facecast takes 0.5 to 2.0.")
    emotion: str | None = Field(default=None, description="Accepted; Facecast has no emotions.")
    elevenlabs_settings: HeyGenElevenlabsSettings | None = Field(
        default=None, description="Accepted; Facecast's voices are not ElevenLabs'."
    )


class HeyGenNewSession(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "quality": "medium",
                    "avatar_id": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
                    "voice": {"voice_id": "espeak:en-us", "rate": 1.0},
                    "video_encoding": "VP8",
                    "disable_idle_timeout": False,
                }
            ]
        }
    )

    quality: HeyGenQuality = Field(
        description="Maps onto the best tier Facecast renders at or below it (README)."
    )
    avatar_id: str = Field(
        default=DEFAULT_AVATAR,
        description="An `av_...` id: Facecast has no default avatar (400 `avatar_required`).",
    )
    voice: HeyGenVoice | None = None
    video_encoding: VideoEncoding = VideoEncoding.VP8
    knowledge_base: str | None = Field(default=None, description="Accepted; no chat in Facecast.")
    version: str | None = None
    knowledge_base_id: str | None = Field(default=None, description="Accepted; no chat.")
    disable_idle_timeout: StrictBool = False


class HeyGenSessionRef(BaseModel):
    session_id: str = Field(description="The `session_id` streaming.new answered (`sess_...`).")


class HeyGenTaskType(StrEnum):
    REPEAT = "repeat"
    CHAT = "chat"


class HeyGenTask(BaseModel):
    session_id: str
    text: str = Field(description="What the avatar says.")
    task_type: HeyGenTaskType = Field(
        default=HeyGenTaskType.REPEAT,
        description="`repeat`: say the text; `chat` is 400: Facecast has no LLM.",
    )


class HeyGenTaskData(BaseModel):
    task_id: str = Field(description="Facecast's speak task (`spk_...`).")


class HeyGenTaskResponse(BaseModel):
    code: int = SUCCESS_CODE
    message: str = SUCCESS_MESSAGE
    data: HeyGenTaskData


class HeyGenNewSessionData(BaseModel):
    session_id: str
    url: str = Field(description="The LiveKit URL of the session's room.")
    access_token: str = Field(description="Joins that room, subscribe-only, for a few minutes.")
    session_duration_limit: int
    is_paid: bool
    realtime_endpoint: str = Field(description="Empty: Facecast has no realtime endpoint.")


class HeyGenListedSession(BaseModel):
    session_id: str
    status: str = Field(description="`connecting`, `connected` or `closing`.")
    created_at: int = Field(description="Unix seconds.")


class HeyGenSessionListData(BaseModel):
    sessions: list[HeyGenListedSession]


class HeyGenNewSessionResponse(BaseModel):
    code: int = SUCCESS_CODE
    message: str = SUCCESS_MESSAGE
    data: HeyGenNewSessionData


class HeyGenListResponse(BaseModel):
    code: int = SUCCESS_CODE
    message: str = SUCCESS_MESSAGE
    data: HeyGenSessionListData


class HeyGenEmptyResponse(BaseModel):
    code: int = SUCCESS_CODE
    message: str = SUCCESS_MESSAGE
    data: None = None


class HeyGenError(BaseModel):
    code: int = Field(description="The HTTP status.")
    message: str = Field(description="Facecast's error code, a colon, and what went wrong.")
    data: None = None


def error_body(status: int, code: str, message: str) -> dict[str, Any]:
    return HeyGenError(code=status, message=f"{code}: {message}").model_dump(mode="json")
