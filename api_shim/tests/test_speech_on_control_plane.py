"""Speak, read a speak task and interrupt (#23) against the real kube-apiserver: what lands in
the session's spec.speech, how the worker's reports (written here through the status
subresource, as the worker would) show, the typed refusals, and each tenant seeing only its own.
No worker runs here: nothing is ever spoken."""

from __future__ import annotations

import asyncio
from dataclasses import replace
from datetime import datetime
from typing import Any

import httpx
import pytest

from api_shim.tests.control_plane import (
    BASE_SETTINGS,
    Cluster,
    RequestFactory,
    _created,
    error_of,
)
from avatar_crds.ids import new_public_id
from avatar_crds.speech import SPEAK_TEXT_MAX_CHARS, SPEECH_TASKS_MAX, SPEECH_UNFINISHED_MAX
from testbed.tenants import TenantKey

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

TASK_FIELDS = {
    "id",
    "object",
    "session_id",
    "state",
    "text",
    "voice",
    "created_at",
    "started_at",
    "finished_at",
    "message",
}
# A warm key cache: many requests in a row, none of them waiting on a reload of the keys.
WARM = replace(BASE_SETTINGS, auth_cache_ttl_seconds=600.0)


async def _session(
    cluster: Cluster,
    http: httpx.AsyncClient,
    tenant: TenantKey,
    make_request: RequestFactory,
    **fields: Any,
) -> str:
    session = await _created(http, tenant, make_request(avatar_id=cluster.avatar(tenant), **fields))
    return str(session["id"])


async def _speak(
    http: httpx.AsyncClient, tenant: TenantKey, session_id: str, **body: Any
) -> httpx.Response:
    return await http.post(
        f"/v1/sessions/{session_id}/speak",
        json={"text": "Hello there.", **body},
        headers=tenant.headers,
    )


async def _spoken(
    http: httpx.AsyncClient, tenant: TenantKey, session_id: str, **body: Any
) -> dict[str, Any]:
    response = await _speak(http, tenant, session_id, **body)
    assert response.status_code == 202, response.text
    task: dict[str, Any] = response.json()
    return task


async def _task(
    http: httpx.AsyncClient, tenant: TenantKey, session_id: str, task_id: str
) -> httpx.Response:
    return await http.get(f"/v1/sessions/{session_id}/speak/{task_id}", headers=tenant.headers)


def _spec(cluster: Cluster, session_id: str) -> dict[str, Any]:
    resource = cluster.session_object(session_id)
    assert resource is not None
    spec: dict[str, Any] = resource["spec"]
    return spec


def _report(cluster: Cluster, session_id: str, reports: list[dict[str, Any]]) -> None:
    """What the worker does: its reports in status.worker.speech, through the status
    subresource."""
    cluster.set_session_status(session_id, {"worker": {"speech": reports}})


# --- speak ---------------------------------------------------------------------------------------


async def test_speak_queues_tasks_in_order_and_counts_as_activity(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request, voice={"id": "espeak:en-gb"})
        first = await _spoken(http, acme, session_id, text="First sentence.")
        second = await _spoken(
            http, acme, session_id, text="Second one.", voice={"id": "espeak:de", "speed": 1.25}
        )
        session = (await http.get(f"/v1/sessions/{session_id}", headers=acme.headers)).json()
    assert set(first) == TASK_FIELDS
    assert first["id"].startswith("spk_")
    assert (first["object"], first["session_id"], first["state"]) == (
        "speak_task",
        session_id,
        "queued",
    )
    assert first["text"] == "First sentence."
    assert first["voice"] == {"id": "espeak:en-gb", "speed": 1.0}  # the session's
    assert second["voice"] == {"id": "espeak:de", "speed": 1.25}  # its own
    assert (first["started_at"], first["finished_at"], first["message"]) == (None, None, None)

    spec = _spec(cluster, session_id)
    assert [(t["id"], t["seq"], t["text"]) for t in spec["speech"]] == [
        (first["id"], 1, "First sentence."),
        (second["id"], 2, "Second one."),
    ]
    assert "voice" not in spec["speech"][0]
    assert spec["speech"][1]["voice"] == {"id": "espeak:de", "speed": 1.25}
    assert spec.get("speechClearedThrough", 0) == 0
    # Speech is activity: the idle timer restarts with each task.
    assert spec["keepAliveAt"] == spec["speech"][1]["requestedAt"]
    assert datetime.fromisoformat(session["keep_alive_at"]) == datetime.fromisoformat(
        second["created_at"]
    )


async def test_a_session_that_has_not_started_may_be_spoken_to(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        for phase in ("queued", "starting", "running"):
            cluster.set_session_status(session_id, {"phase": phase})
            task = await _spoken(http, acme, session_id, text=f"Said while {phase}.")
            assert task["state"] == "queued"
    assert [t["seq"] for t in _spec(cluster, session_id)["speech"]] == [1, 2, 3]


async def test_concurrent_speaks_each_get_their_own_seq(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api(WARM) as http:
        session_id = await _session(cluster, http, acme, make_request)
        responses = await asyncio.gather(
            *(_speak(http, acme, session_id, text=f"Line {n}.") for n in range(8))
        )
    assert {response.status_code for response in responses} == {202}
    ids = {response.json()["id"] for response in responses}
    speech = _spec(cluster, session_id)["speech"]
    assert {t["id"] for t in speech} == ids
    assert sorted(t["seq"] for t in speech) == list(range(1, 9))


# --- read a task --------------------------------------------------------------------------------


async def test_a_task_shows_what_the_worker_reports(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        said = await _spoken(http, acme, session_id, text="Done soon.")
        speaking = await _spoken(http, acme, session_id, text="Saying it.")
        broken = await _spoken(http, acme, session_id, text="Never said.")
        waiting = await _spoken(http, acme, session_id, text="Still waiting.")
        _report(
            cluster,
            session_id,
            [
                {
                    "id": said["id"],
                    "state": "done",
                    "startedAt": "2026-11-21T08:00:01Z",
                    "finishedAt": "2026-11-21T08:00:02Z",
                },
                {"id": speaking["id"], "state": "speaking", "startedAt": "2026-11-21T08:00:02Z"},
                {
                    "id": broken["id"],
                    "state": "failed",
                    "finishedAt": "2026-11-21T08:00:02Z",
                    "message": "tts_unavailable: the speech server did not answer",
                },
            ],
        )
        got = {
            task["id"]: (await _task(http, acme, session_id, task["id"])).json()
            for task in (said, speaking, broken, waiting)
        }
    assert got[said["id"]]["state"] == "done"
    assert (got[said["id"]]["started_at"], got[said["id"]]["finished_at"]) == (
        "2026-11-21T08:00:01Z",
        "2026-11-21T08:00:02Z",
    )
    assert got[speaking["id"]]["state"] == "speaking"
    assert got[speaking["id"]]["finished_at"] is None
    assert got[broken["id"]]["state"] == "failed"
    assert got[broken["id"]]["message"] == "tts_unavailable: the speech server did not answer"
    assert got[waiting["id"]]["state"] == "queued"
    assert got[waiting["id"]] == {**waiting, "state": "queued"}


async def test_an_unknown_task_is_404(cluster: Cluster, make_request: RequestFactory) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        other_session = await _session(cluster, http, acme, make_request)
        elsewhere = await _spoken(http, acme, other_session)
        for task_id in (new_public_id("spk"), "spk_nope", elsewhere["id"]):
            error = error_of(
                await _task(http, acme, session_id, task_id),
                404,
                "not_found",
                "speak_task_not_found",
            )
            assert error["param"] == "task_id"
        missing = await _task(http, acme, new_public_id("sess"), elsewhere["id"])
    error_of(missing, 404, "not_found", "session_not_found")


# --- interrupt ----------------------------------------------------------------------------------


async def test_interrupt_clears_through_the_last_task_and_repeating_it_changes_nothing(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        said = await _spoken(http, acme, session_id, text="Already said.")
        speaking = await _spoken(http, acme, session_id, text="Being said.")
        queued = await _spoken(http, acme, session_id, text="Not yet said.")
        _report(
            cluster,
            session_id,
            [{"id": said["id"], "state": "done"}, {"id": speaking["id"], "state": "speaking"}],
        )
        path = f"/v1/sessions/{session_id}/interrupt"
        first = await http.post(path, headers=acme.headers)
        assert first.status_code == 200, first.text
        cleared = cluster.session_object(session_id)
        assert cleared is not None
        again = await http.post(path, headers=acme.headers)
        cut = (await _task(http, acme, session_id, queued["id"])).json()
        still = (await _task(http, acme, session_id, speaking["id"])).json()
        after = await _spoken(http, acme, session_id, text="After the interrupt.")
    assert first.json() == {
        "object": "interrupt",
        "session_id": session_id,
        "interrupted_task_ids": [speaking["id"], queued["id"]],
    }
    assert cleared["spec"]["speechClearedThrough"] == 3
    assert again.status_code == 200
    assert again.json()["interrupted_task_ids"] == []
    unchanged = cluster.session_object(session_id)
    assert unchanged is not None
    assert unchanged["spec"]["speechClearedThrough"] == 3
    # A queued task an interrupt covers never starts; one being said is cut by the worker,
    # which reports it interrupted: until then it is still speaking.
    assert cut["state"] == "interrupted"
    assert still["state"] == "speaking"
    assert after["state"] == "queued"
    assert [t["seq"] for t in unchanged["spec"]["speech"]] == [1, 2, 3, 4]


async def test_speak_with_interrupt_cuts_in_and_is_said_next(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        earlier = [await _spoken(http, acme, session_id, text=f"Line {n}.") for n in range(2)]
        urgent = await _spoken(http, acme, session_id, text="Stop, listen.", interrupt=True)
        states = [
            (await _task(http, acme, session_id, task["id"])).json()["state"]
            for task in (*earlier, urgent)
        ]
    spec = _spec(cluster, session_id)
    assert spec["speechClearedThrough"] == 2
    assert [(t["id"], t["seq"]) for t in spec["speech"]][-1] == (urgent["id"], 3)
    assert states == ["interrupted", "interrupted", "queued"]


async def test_a_full_list_drops_its_oldest_finished_tasks(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api(WARM) as http:
        session_id = await _session(cluster, http, acme, make_request)
        made: list[str] = []
        for batch in range(SPEECH_TASKS_MAX // SPEECH_UNFINISHED_MAX):
            for n in range(SPEECH_UNFINISHED_MAX):
                made.append((await _spoken(http, acme, session_id, text=f"{batch}.{n}"))["id"])
            _report(cluster, session_id, [{"id": task_id, "state": "done"} for task_id in made])
        assert len(_spec(cluster, session_id)["speech"]) == SPEECH_TASKS_MAX
        newest = await _spoken(http, acme, session_id, text="One more.")
        forgotten = await _task(http, acme, session_id, made[0])
        kept = await _task(http, acme, session_id, made[1])
    speech = _spec(cluster, session_id)["speech"]
    assert len(speech) == SPEECH_TASKS_MAX
    assert [t["id"] for t in speech] == [*made[1:], newest["id"]]
    assert speech[-1]["seq"] == SPEECH_TASKS_MAX + 1
    error_of(forgotten, 404, "not_found", "speak_task_not_found")
    assert kept.json()["state"] == "done"


# --- refusals -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "param", "code"),
    [
        ({"text": ""}, "text", "invalid_parameter"),
        ({"text": "x" * (SPEAK_TEXT_MAX_CHARS + 1)}, "text", "invalid_parameter"),
        ({"text": None}, "text", "invalid_parameter"),
        ({"voice": {"id": "espeak:xx"}}, "voice.id", "unknown_voice"),
        ({"voice": {"id": "espeak:en-us", "speed": 2.5}}, "voice.speed", "invalid_parameter"),
        ({"interrupt": "yes"}, "interrupt", "invalid_parameter"),
        ({"pitch": 3}, "pitch", "unknown_parameter"),
    ],
)
async def test_an_invalid_speak_is_400_naming_the_field(
    cluster: Cluster,
    make_request: RequestFactory,
    body: dict[str, Any],
    param: str,
    code: str,
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        response = await _speak(http, acme, session_id, **body)
    error = error_of(response, 400, "invalid_request", code)
    assert error["param"] == param
    assert _spec(cluster, session_id).get("speech", []) == []


async def test_a_missing_text_is_400_and_a_text_at_the_limit_is_spoken(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        missing = await http.post(f"/v1/sessions/{session_id}/speak", json={}, headers=acme.headers)
        longest = await _speak(http, acme, session_id, text="é" * SPEAK_TEXT_MAX_CHARS)
    assert error_of(missing, 400, "invalid_request", "parameter_missing")["param"] == "text"
    assert longest.status_code == 202, longest.text
    assert _spec(cluster, session_id)["speech"][0]["text"] == "é" * SPEAK_TEXT_MAX_CHARS


async def test_a_speed_outside_the_voices_range_is_400(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    voices = '[{"voice": "kokoro_af", "languages": ["en-US"], "speed_min": 0.8, "speed_max": 1.5}]'
    acme = await cluster.tenant()
    async with cluster.api(replace(BASE_SETTINGS, tts_openai_voices=voices)) as http:
        session_id = await _session(cluster, http, acme, make_request)
        response = await _speak(
            http, acme, session_id, voice={"id": "openai:kokoro_af", "speed": 1.8}
        )
        accepted = await _speak(
            http, acme, session_id, voice={"id": "openai:kokoro_af", "speed": 1.2}
        )
    error = error_of(response, 400, "invalid_request", "voice_speed_out_of_range")
    assert error["param"] == "voice.speed"
    assert accepted.status_code == 202, accepted.text


async def test_speak_and_interrupt_are_409_once_the_session_is_ending_or_finished(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        ending = await _session(cluster, http, acme, make_request)
        await _spoken(http, acme, ending)
        await http.post(f"/v1/sessions/{ending}/end", headers=acme.headers)
        ended = await _session(cluster, http, acme, make_request)
        cluster.set_session_status(
            ended,
            {"phase": "ended", "reason": "idle_timeout", "finishedAt": "2026-11-21T08:05:00Z"},
        )
        refusals = [await _speak(http, acme, session_id) for session_id in (ending, ended)] + [
            await http.post(f"/v1/sessions/{session_id}/interrupt", headers=acme.headers)
            for session_id in (ending, ended)
        ]
    for response in refusals:
        error_of(response, 409, "conflict", "session_not_active")
    assert len(_spec(cluster, ending)["speech"]) == 1
    assert _spec(cluster, ending).get("speechClearedThrough", 0) == 0


async def test_the_queue_is_full_at_the_unfinished_limit(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api(WARM) as http:
        session_id = await _session(cluster, http, acme, make_request)
        first = [await _spoken(http, acme, session_id) for _ in range(SPEECH_UNFINISHED_MAX)]
        refused = await _speak(http, acme, session_id)
        _report(cluster, session_id, [{"id": first[0]["id"], "state": "done"}])
        room_again = await _speak(http, acme, session_id)
        full_again = await _speak(http, acme, session_id)
        cutting_in = await _speak(http, acme, session_id, interrupt=True)
    error = error_of(refused, 429, "rate_limit", "speech_queue_full")
    assert error["param"] is None
    assert int(refused.headers["Retry-After"]) >= 1
    assert room_again.status_code == 202, room_again.text
    error_of(full_again, 429, "rate_limit", "speech_queue_full")
    assert cutting_in.status_code == 202, cutting_in.text
    assert len(_spec(cluster, session_id)["speech"]) == SPEECH_UNFINISHED_MAX + 2


async def test_a_tenant_never_reaches_another_tenants_speech(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    async with cluster.api() as http:
        session_id = await _session(cluster, http, acme, make_request)
        task = await _spoken(http, acme, session_id)
        for response in (
            await _speak(http, globex, session_id),
            await _task(http, globex, session_id, task["id"]),
            await http.post(f"/v1/sessions/{session_id}/interrupt", headers=globex.headers),
            await _speak(http, acme, new_public_id("sess")),
            await http.post("/v1/sessions/sess_nope/interrupt", headers=acme.headers),
        ):
            error = error_of(response, 404, "not_found", "session_not_found")
            assert error["param"] == "id"
        anonymous = await http.post(f"/v1/sessions/{session_id}/speak", json={"text": "hi"})
    error_of(anonymous, 401, "authentication", "invalid_api_key")
    spec = _spec(cluster, session_id)
    assert [t["id"] for t in spec["speech"]] == [task["id"]]
    assert spec.get("speechClearedThrough", 0) == 0
