"""The voice catalogue (avatar_crds.voices) and its configuration: pure."""

from __future__ import annotations

import json

import pytest

from api_shim.errors import ApiError
from api_shim.sessions.schemas import Voice
from api_shim.settings import Settings
from api_shim.voices import check_voice, voice_list
from avatar_crds.voices import (
    DEFAULT_VOICE_ID,
    ENV_TTS_OPENAI_VOICES,
    ESPEAK_VOICES,
    VoiceCatalogue,
    VoiceEngine,
    catalogue,
    parse_configured_voices,
)


def test_the_offline_voices_come_first_and_the_default_is_one_of_them() -> None:
    voices = catalogue("").voices
    assert voices == ESPEAK_VOICES
    assert voices[0].id == DEFAULT_VOICE_ID
    assert all(voice.engine is VoiceEngine.ESPEAK_NG for voice in voices)
    assert all(voice.id == f"espeak:{voice.engine_voice}" for voice in voices)


def test_configured_voices_follow_with_their_own_ids() -> None:
    raw = json.dumps([{"voice": "alloy", "languages": ["en"], "speed_max": 1.5}])
    (alloy,) = parse_configured_voices(raw)
    assert (alloy.id, alloy.name, alloy.engine_voice) == ("openai:alloy", "alloy", "alloy")
    assert (alloy.engine, alloy.speed_min, alloy.speed_max) == ("openai-compatible", 0.5, 1.5)
    assert catalogue(raw).voices[-1] == alloy


@pytest.mark.parametrize(
    ("raw", "says"),
    [
        ("not json", "not a valid voice list"),
        ('{"voice": "alloy"}', "not a valid voice list"),
        ('[{"voice": "alloy"}]', "languages"),
        ('[{"voice": "alloy", "languages": []}]', "languages"),
        ('[{"voice": "al loy", "languages": ["en"]}]', "voice"),
        ('[{"voice": "alloy", "languages": ["en"], "speed_max": 3}]', "speed_max"),
        ('[{"voice": "alloy", "languages": ["en"], "key": "x"}]', "key"),
        ('[{"voice": "a", "languages": ["en"], "speed_min": 1.5, "speed_max": 1}]', "speed_min"),
    ],
)
def test_a_bad_voice_list_is_refused_saying_why(raw: str, says: str) -> None:
    with pytest.raises(ValueError, match=says):
        parse_configured_voices(raw)


def test_a_voice_listed_twice_is_refused() -> None:
    twice = json.dumps([{"voice": "alloy", "languages": ["en"]}] * 2)
    with pytest.raises(ValueError, match="listed twice: openai:alloy"):
        catalogue(twice)


def test_a_bad_voice_list_stops_the_api_at_start_up() -> None:
    with pytest.raises(ValueError, match="not a valid voice list"):
        Settings.from_env({ENV_TTS_OPENAI_VOICES: "[1]"})
    configured = Settings.from_env({ENV_TTS_OPENAI_VOICES: '[{"voice":"x","languages":["en"]}]'})
    assert configured.voice_catalogue().find("openai:x") is not None


def test_the_check_names_the_field_at_fault() -> None:
    voices = VoiceCatalogue(ESPEAK_VOICES)
    assert voices.check(DEFAULT_VOICE_ID, 2.0) is None
    unknown = voices.check("espeak:tlh", 1.0)
    assert unknown is not None
    assert (unknown.param, unknown.code) == ("voice.id", "unknown_voice")
    check_voice(None, voices)  # no voice: the default speaks
    with pytest.raises(ApiError) as refused:
        check_voice(Voice(id="espeak:tlh"), voices)
    assert (refused.value.status, refused.value.param) == (400, "voice.id")


def test_the_listing_marks_one_default() -> None:
    listed = voice_list(catalogue(""))
    assert [voice.id for voice in listed.data if voice.default] == [DEFAULT_VOICE_ID]
    assert listed.data[0].speed.min == 0.5
