"""The voices an installation offers: what GET /v1/voices lists, what a session's `voice` is
checked against at create, and how the worker finds the TTS engine and the engine's own name
for a voice. Pure: the offline voices are a curated table (each one is in Debian's espeak-ng,
which a test checks), the OpenAI-compatible ones come from the installation's configuration
(`FACECAST_TTS_OPENAI_VOICES`, a JSON list the chart sets)."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from enum import StrEnum
from typing import Annotated, Final

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

from avatar_crds import contract
from avatar_crds.speech import VOICE_SPEED_MAX, VOICE_SPEED_MIN

ENV_TTS_OPENAI_VOICES: Final = contract.ENV_TTS_OPENAI_VOICES

# The session's own bounds: no catalogue voice can offer more than these.
SPEED_MIN: Final = VOICE_SPEED_MIN
SPEED_MAX: Final = VOICE_SPEED_MAX
VOICE_ID_MAX_LENGTH: Final = 64
VOICE_ID_PATTERN: Final = r"^[a-z0-9]+:[A-Za-z0-9][A-Za-z0-9._-]*$"


class VoiceEngine(StrEnum):
    """The TTS engine that speaks a voice; a voice id starts with its engine's prefix."""

    ESPEAK_NG = "espeak-ng"
    OPENAI_COMPATIBLE = "openai-compatible"

    @property
    def id_prefix(self) -> str:
        return _ID_PREFIXES[self]


_ID_PREFIXES: Final = {VoiceEngine.ESPEAK_NG: "espeak", VoiceEngine.OPENAI_COMPATIBLE: "openai"}


class CatalogueVoice(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    id: Annotated[str, Field(max_length=VOICE_ID_MAX_LENGTH, pattern=VOICE_ID_PATTERN)]
    name: Annotated[str, Field(min_length=1, max_length=128)]
    engine: VoiceEngine
    engine_voice: Annotated[str, Field(min_length=1, max_length=128)] = Field(
        description="The engine's own name for the voice (espeak-ng `-v`, OpenAI `voice`)."
    )
    languages: Annotated[tuple[str, ...], Field(min_length=1)] = Field(
        description="BCP 47 tags of the languages the voice speaks well."
    )
    speed_min: Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX)] = SPEED_MIN
    speed_max: Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX)] = SPEED_MAX


def _espeak(voice: str, name: str, *languages: str) -> CatalogueVoice:
    return CatalogueVoice(
        id=f"{VoiceEngine.ESPEAK_NG.id_prefix}:{voice}",
        name=name,
        engine=VoiceEngine.ESPEAK_NG,
        engine_voice=voice,
        languages=languages,
    )


# espeak-ng has ~130 voices; these are the widely spoken languages it speaks intelligibly,
# one voice per language (two where the regional variants differ a lot). Each one reads digits
# aloud, which the worker's tests check (Hebrew is left out: espeak-ng 1.51 reads none).
ESPEAK_VOICES: Final = (
    _espeak("en-us", "English (America)", "en-US", "en"),
    _espeak("en-gb", "English (Great Britain)", "en-GB"),
    _espeak("de", "German", "de"),
    _espeak("fr-fr", "French (France)", "fr-FR", "fr"),
    _espeak("es", "Spanish (Spain)", "es-ES", "es"),
    _espeak("es-419", "Spanish (Latin America)", "es-419"),
    _espeak("it", "Italian", "it"),
    _espeak("pt", "Portuguese (Portugal)", "pt-PT"),
    _espeak("pt-br", "Portuguese (Brazil)", "pt-BR", "pt"),
    _espeak("nl", "Dutch", "nl"),
    _espeak("pl", "Polish", "pl"),
    _espeak("cs", "Czech", "cs"),
    _espeak("sv", "Swedish", "sv"),
    _espeak("da", "Danish", "da"),
    _espeak("nb", "Norwegian Bokmål", "nb", "no"),
    _espeak("fi", "Finnish", "fi"),
    _espeak("el", "Greek", "el"),
    _espeak("ru", "Russian", "ru"),
    _espeak("uk", "Ukrainian", "uk"),
    _espeak("tr", "Turkish", "tr"),
    _espeak("ar", "Arabic", "ar"),
    _espeak("hi", "Hindi", "hi"),
    _espeak("id", "Indonesian", "id"),
    _espeak("vi", "Vietnamese (Northern)", "vi"),
    _espeak("ja", "Japanese", "ja"),
    _espeak("ko", "Korean", "ko"),
    _espeak("cmn", "Chinese (Mandarin)", "zh", "cmn"),
)
DEFAULT_VOICE_ID: Final = ESPEAK_VOICES[0].id
"""What speaks for a session that names no voice: offline, so it works on a fresh install."""


class ConfiguredVoice(BaseModel):
    """One entry of `FACECAST_TTS_OPENAI_VOICES`: a voice the OpenAI-compatible server has."""

    model_config = ConfigDict(extra="forbid")

    voice: Annotated[str, Field(min_length=1, max_length=56, pattern=r"^[A-Za-z0-9][\w.-]*$")]
    name: Annotated[str, Field(min_length=1, max_length=128)] | None = None
    languages: Annotated[tuple[str, ...], Field(min_length=1)]
    speed_min: Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX)] = SPEED_MIN
    speed_max: Annotated[float, Field(ge=SPEED_MIN, le=SPEED_MAX)] = SPEED_MAX

    def to_catalogue(self) -> CatalogueVoice:
        return CatalogueVoice(
            id=f"{VoiceEngine.OPENAI_COMPATIBLE.id_prefix}:{self.voice}",
            name=self.name or self.voice,
            engine=VoiceEngine.OPENAI_COMPATIBLE,
            engine_voice=self.voice,
            languages=self.languages,
            speed_min=self.speed_min,
            speed_max=self.speed_max,
        )


_CONFIGURED = TypeAdapter(list[ConfiguredVoice])


def parse_configured_voices(raw: str) -> tuple[CatalogueVoice, ...]:
    """`FACECAST_TTS_OPENAI_VOICES`: a JSON list of `{"voice", "languages", ["name",
    "speed_min", "speed_max"]}`; empty means none. ValueError says what is wrong."""
    if not raw.strip():
        return ()
    try:
        entries = _CONFIGURED.validate_python(json.loads(raw))
    except (json.JSONDecodeError, ValidationError) as error:
        raise ValueError(f"{ENV_TTS_OPENAI_VOICES} is not a valid voice list: {error}") from None
    voices = tuple(entry.to_catalogue() for entry in entries)
    for voice in voices:
        if voice.speed_min > voice.speed_max:
            raise ValueError(f"{ENV_TTS_OPENAI_VOICES}: {voice.id} has speed_min > speed_max")
    return voices


@dataclass(frozen=True)
class VoiceRefusal:
    """Why a session's voice cannot be spoken: the field at fault, a code, a message."""

    param: str
    code: str
    message: str


@dataclass(frozen=True)
class VoiceCatalogue:
    voices: tuple[CatalogueVoice, ...]

    def __post_init__(self) -> None:
        ids = [voice.id for voice in self.voices]
        duplicates = sorted({voice_id for voice_id in ids if ids.count(voice_id) > 1})
        if duplicates:
            raise ValueError(f"voice ids listed twice: {', '.join(duplicates)}")

    def find(self, voice_id: str) -> CatalogueVoice | None:
        return next((voice for voice in self.voices if voice.id == voice_id), None)

    def check(self, voice_id: str, speed: float) -> VoiceRefusal | None:
        """Why a session's `voice` (its id and speed) cannot be spoken here, or None."""
        found = self.find(voice_id)
        if found is None:
            return VoiceRefusal(
                "voice.id",
                "unknown_voice",
                f"voice.id {voice_id!r} is not offered here; GET /v1/voices lists the voices.",
            )
        if not found.speed_min <= speed <= found.speed_max:
            return VoiceRefusal(
                "voice.speed",
                "voice_speed_out_of_range",
                f"voice.speed {speed} is outside {found.id}'s range"
                f" [{found.speed_min}, {found.speed_max}].",
            )
        return None


@functools.cache
def catalogue(openai_voices: str = "") -> VoiceCatalogue:
    """The installation's catalogue: the offline voices, then the configured ones (the raw
    `FACECAST_TTS_OPENAI_VOICES` value; cached per value, the catalogue is immutable)."""
    return VoiceCatalogue((*ESPEAK_VOICES, *parse_configured_voices(openai_voices)))
