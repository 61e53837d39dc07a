"""The public speech models: what POST /v1/sessions/{id}/speak takes, the speak task the speak
endpoints return, and what an interrupt answers (the conventions are in `api_shim.schemas`)."""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from api_shim.schemas import RequestModel, ResponseModel
from api_shim.sessions.schemas import SESSION_ID_PATTERN, StrictBool, Voice
from avatar_crds.ids import public_id_pattern
from avatar_crds.speech import (
    SPEAK_TASK_PREFIX,
    SPEAK_TEXT_MAX_CHARS,
    SPEECH_MESSAGE_MAX_LENGTH,
    SpeechState,
)

SPEAK_TASK_ID_PATTERN = public_id_pattern(SPEAK_TASK_PREFIX)

_SPEAK_EXAMPLE: dict[str, Any] = {
    "text": "Hello! How can I help you today?",
    "voice": {"id": "espeak:en-us", "speed": 1.1},
    "interrupt": False,
}


class SpeakRequest(RequestModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_SPEAK_EXAMPLE]})

    text: Annotated[str, Field(min_length=1, max_length=SPEAK_TEXT_MAX_CHARS)] = Field(
        description=f"What the avatar says: 1 to {SPEAK_TEXT_MAX_CHARS} characters."
    )
    voice: Voice | None = Field(
        default=None,
        description="This task's voice, instead of the session's (checked the same way).",
    )
    interrupt: StrictBool = Field(
        default=False,
        description=(
            "Cut in: what the avatar is saying and everything queued before this task is"
            " interrupted, and this task is spoken next."
        ),
    )


_TASK_EXAMPLE: dict[str, Any] = {
    "id": "spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2B4",
    "object": "speak_task",
    "session_id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
    "state": "queued",
    "text": "Hello! How can I help you today?",
    "voice": {"id": "espeak:en-us", "speed": 1.1},
    "created_at": "2026-11-21T08:00:05Z",
    "started_at": None,
    "finished_at": None,
    "message": None,
}


class SpeakTaskView(ResponseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_TASK_EXAMPLE]})

    id: Annotated[str, Field(pattern=SPEAK_TASK_ID_PATTERN)]
    object: Literal["speak_task"] = "speak_task"
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
    state: SpeechState = Field(
        description=(
            "queued -> speaking -> done; or interrupted (cut, or cleared before it started),"
            " failed (`message` says why). Queued tasks are spoken in order once the worker"
            " has joined the room."
        )
    )
    text: str
    voice: Voice | None = Field(
        description="The voice it is spoken with: the task's, else the session's; `null`: the"
        " installation's default voice."
    )
    created_at: datetime
    started_at: datetime | None = Field(description="When the avatar began to say it.")
    finished_at: datetime | None = Field(
        description="When it was done, interrupted or failed while speaking."
    )
    message: Annotated[str, Field(max_length=SPEECH_MESSAGE_MAX_LENGTH)] | None = Field(
        description="Why it failed (the speech engine's error)."
    )


class InterruptResult(ResponseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "object": "interrupt",
                    "session_id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
                    "interrupted_task_ids": ["spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2B4"],
                }
            ]
        },
    )

    object: Literal["interrupt"] = "interrupt"
    session_id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
    interrupted_task_ids: list[Annotated[str, Field(pattern=SPEAK_TASK_ID_PATTERN)]] = Field(
        description=(
            "The tasks this interrupt cut or cleared (speaking or queued, in order); empty"
            " when there was nothing left to say."
        )
    )
