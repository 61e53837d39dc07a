"""GET /v1/voices and the create-time check of a session's voice, against the real
kube-apiserver."""

from __future__ import annotations

import json
from dataclasses import replace

import pytest

from api_shim.tests.control_plane import BASE_SETTINGS, Cluster, RequestFactory, _create, error_of
from api_shim.voices import VoiceList
from avatar_crds.voices import DEFAULT_VOICE_ID, ESPEAK_VOICES

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

OPENAI_VOICES = json.dumps(
    [
        {"voice": "alloy", "name": "Alloy", "languages": ["en"]},
        {"voice": "kokoro_af", "languages": ["en-US"], "speed_min": 0.8, "speed_max": 1.5},
    ]
)
WITH_OPENAI = replace(BASE_SETTINGS, tts_openai_voices=OPENAI_VOICES)


async def test_the_voices_are_listed_with_their_languages(cluster: Cluster) -> None:
    acme = await cluster.tenant()
    async with cluster.api(WITH_OPENAI) as http:
        response = await http.get("/v1/voices", headers=acme.headers)
        anonymous = await http.get("/v1/voices")
    assert response.status_code == 200, response.text
    listed = VoiceList.model_validate(response.json())
    by_id = {voice.id: voice for voice in listed.data}
    assert len(by_id) == len(listed.data) == len(ESPEAK_VOICES) + 2
    english = by_id[DEFAULT_VOICE_ID]
    assert (english.engine, english.languages, english.default) == (
        "espeak-ng",
        ["en-US", "en"],
        True,
    )
    assert [voice.id for voice in listed.data if voice.default] == [DEFAULT_VOICE_ID]
    assert by_id["espeak:de"].languages == ["de"]
    alloy, kokoro = by_id["openai:alloy"], by_id["openai:kokoro_af"]
    assert (alloy.name, alloy.engine, alloy.languages) == ("Alloy", "openai-compatible", ["en"])
    assert (kokoro.name, kokoro.speed.min, kokoro.speed.max) == ("kokoro_af", 0.8, 1.5)
    error_of(anonymous, 401, "authentication", "invalid_api_key")


async def test_without_a_speech_server_only_the_offline_voices_are_listed(cluster: Cluster) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await http.get("/v1/voices", headers=acme.headers)
    assert {voice["engine"] for voice in response.json()["data"]} == {"espeak-ng"}


async def test_a_session_with_a_listed_voice_is_created_with_it(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api(WITH_OPENAI) as http:
        for voice in (
            {"id": "espeak:fr-fr", "speed": 2.0},
            {"id": "openai:kokoro_af", "speed": 0.8},
        ):
            response = await _create(
                http, acme, make_request(avatar_id=cluster.avatar(acme), voice=voice)
            )
            assert response.status_code == 201, response.text
            assert response.json()["voice"] == voice
            stored = cluster.session_object(response.json()["id"])
            assert stored is not None
            assert stored["spec"]["voice"] == voice


@pytest.mark.parametrize(
    ("voice", "param", "code"),
    [
        ({"id": "espeak:xx"}, "voice.id", "unknown_voice"),
        ({"id": "en-us"}, "voice.id", "unknown_voice"),  # the engine's name is not the id
        ({"id": "openai:nova"}, "voice.id", "unknown_voice"),  # not configured
        ({"id": "openai:kokoro_af", "speed": 1.8}, "voice.speed", "voice_speed_out_of_range"),
        ({"id": "openai:kokoro_af", "speed": 0.5}, "voice.speed", "voice_speed_out_of_range"),
    ],
)
async def test_a_voice_the_installation_cannot_speak_is_400_naming_the_field(
    cluster: Cluster,
    make_request: RequestFactory,
    voice: dict[str, object],
    param: str,
    code: str,
) -> None:
    acme = await cluster.tenant()
    async with cluster.api(WITH_OPENAI) as http:
        response = await _create(
            http, acme, make_request(avatar_id=cluster.avatar(acme), voice=voice)
        )
    error = error_of(response, 400, "invalid_request", code)
    assert error["param"] == param
    assert "/v1/voices" in error["message"] or "range" in error["message"]
    assert cluster.sessions_of(acme) == []  # refused before anything was made


async def test_a_configured_voice_is_refused_where_no_speech_server_is_configured(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme), voice={"id": "openai:alloy"})
    async with cluster.api() as http:
        refused = await _create(http, acme, body)
    async with cluster.api(WITH_OPENAI) as http:
        accepted = await _create(http, acme, body)
    assert error_of(refused, 400, "invalid_request", "unknown_voice")["param"] == "voice.id"
    assert accepted.status_code == 201, accepted.text
