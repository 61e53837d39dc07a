"""The voices over REST: GET /v1/voices's models, and the create-time check of a session's
`voice` against the installation's catalogue (`avatar_crds.voices`). Pure."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import ConfigDict, Field

from api_shim.errors import invalid_request
from api_shim.schemas import ResponseModel
from api_shim.sessions.schemas import Voice
from avatar_crds.voices import (
    DEFAULT_VOICE_ID,
    VOICE_ID_PATTERN,
    CatalogueVoice,
    VoiceCatalogue,
    VoiceEngine,
)

_VOICE_EXAMPLE: dict[str, Any] = {
    "id": "espeak:en-us",
    "object": "voice",
    "name": "English (America)",
    "engine": "espeak-ng",
    "languages": ["en-US", "en"],
    "speed": {"min": 0.5, "max": 2.0},
    "default": True,
}


class SpeedRange(ResponseModel):
    min: float
    max: float


class VoiceView(ResponseModel):
    id: Annotated[str, Field(pattern=VOICE_ID_PATTERN)] = Field(
        description="What a session's `voice.id` names."
    )
    object: Literal["voice"] = "voice"
    name: str
    engine: VoiceEngine = Field(
        description="`espeak-ng`: offline, on the worker; `openai-compatible`: the platform's"
        " own speech server."
    )
    languages: list[str] = Field(description="BCP 47 tags of the languages it speaks.")
    speed: SpeedRange = Field(description="The `voice.speed` values it takes (1.0: normal).")
    default: bool = Field(description="Whether it speaks for a session that names no voice.")


class VoiceList(ResponseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"object": "list", "data": [_VOICE_EXAMPLE]}]},
    )

    object: Literal["list"] = "list"
    data: list[VoiceView]


def to_view(voice: CatalogueVoice) -> VoiceView:
    return VoiceView(
        id=voice.id,
        name=voice.name,
        engine=voice.engine,
        languages=list(voice.languages),
        speed=SpeedRange(min=voice.speed_min, max=voice.speed_max),
        default=voice.id == DEFAULT_VOICE_ID,
    )


def voice_list(catalogue: VoiceCatalogue) -> VoiceList:
    return VoiceList(data=[to_view(voice) for voice in catalogue.voices])


def check_voice(voice: Voice | None, catalogue: VoiceCatalogue) -> None:
    """400 naming `voice.id` or `voice.speed` for a voice this installation cannot speak."""
    if voice is None:
        return
    refusal = catalogue.check(voice.id, voice.speed)
    if refusal is not None:
        raise invalid_request(refusal.code, refusal.message, refusal.param)
