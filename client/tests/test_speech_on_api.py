"""Speak, read a speak task and interrupt through the client, over real HTTP to the real API
process on the real kube-apiserver. No worker runs here: tasks stay `queued` unless a test
writes the worker's report, through the status subresource, as the worker would."""

from __future__ import annotations

from typing import Any

import pytest
from kubernetes import client

import facecast
from avatar_crds.ids import new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.speech import SPEECH_UNFINISHED_MAX
from client.tests.harness import RunningApi, session_request
from testbed.tenants import new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


def _custom(api_client: client.ApiClient) -> client.CustomObjectsApi:
    return client.CustomObjectsApi(api_client)


def _spec(api_client: client.ApiClient, api: RunningApi, session_id: str) -> dict[str, Any]:
    resource: Any = _custom(api_client).get_namespaced_custom_object(
        GROUP, VERSION, api.namespace, AVATAR_SESSION.plural, to_resource_name(session_id, "sess")
    )
    spec: dict[str, Any] = resource["spec"]
    return spec


def _report(
    api_client: client.ApiClient, api: RunningApi, session_id: str, reports: list[dict[str, Any]]
) -> None:
    _custom(api_client).patch_namespaced_custom_object_status(
        GROUP,
        VERSION,
        api.namespace,
        AVATAR_SESSION.plural,
        to_resource_name(session_id, "sess"),
        {"status": {"worker": {"speech": reports}}},
    )


async def test_speak_read_and_interrupt(
    api: RunningApi, public_avatar: str, api_client: client.ApiClient
) -> None:
    acme = await new_tenant(api.kube)
    with facecast.Facecast(api_key=acme.key, base_url=api.url) as fc:
        session = fc.sessions.create(session_request(public_avatar))
        first = fc.sessions.speak(session.id, "Hello there.")
        assert isinstance(first, facecast.SpeakTask)
        assert (first.session_id, first.state, first.text, first.voice) == (
            session.id,
            "queued",
            "Hello there.",
            None,
        )
        assert first.id.startswith("spk_")
        assert str(first.request_id).startswith("req_")
        second = fc.sessions.speak(
            session.id, "Guten Tag.", voice=facecast.Voice(id="espeak:de", speed=1.25)
        )
        assert second.voice == facecast.Voice(id="espeak:de", speed=1.25)
        _report(
            api_client,
            api,
            session.id,
            [{"id": first.id, "state": "speaking", "startedAt": "2026-11-21T08:00:01Z"}],
        )
        speaking = fc.sessions.get_speak_task(session.id, first.id)
        assert speaking.state == "speaking"
        assert speaking.started_at is not None

        stopped = fc.sessions.interrupt(session.id)
        assert isinstance(stopped, facecast.InterruptResult)
        assert stopped.interrupted_task_ids == [first.id, second.id]
        assert fc.sessions.get_speak_task(session.id, second.id).state == "interrupted"
        assert fc.sessions.interrupt(session.id).interrupted_task_ids == []

        urgent = fc.sessions.speak(session.id, "Listen.", interrupt=True)
    spec = _spec(api_client, api, session.id)
    assert [(t["id"], t["seq"]) for t in spec["speech"]] == [
        (first.id, 1),
        (second.id, 2),
        (urgent.id, 3),
    ]
    assert spec["speechClearedThrough"] == 2
    assert spec["speech"][1]["voice"] == {"id": "espeak:de", "speed": 1.25}


async def test_the_async_client_speaks_too(api: RunningApi, public_avatar: str) -> None:
    acme = await new_tenant(api.kube)
    async with facecast.AsyncFacecast(api_key=acme.key, base_url=api.url) as fc:
        session = await fc.sessions.create(session_request(public_avatar))
        task = await fc.sessions.speak(session.id, "Async hello.")
        fetched = await fc.sessions.get_speak_task(session.id, task.id)
        stopped = await fc.sessions.interrupt(session.id)
    assert (fetched.id, fetched.state, fetched.created_at) == (task.id, "queued", task.created_at)
    assert stopped.interrupted_task_ids == [task.id]


async def test_speech_errors_are_typed(api: RunningApi, public_avatar: str) -> None:
    acme = await new_tenant(api.kube)
    with facecast.Facecast(api_key=acme.key, base_url=api.url, retries=facecast.NO_RETRIES) as fc:
        session = fc.sessions.create(session_request(public_avatar))
        with pytest.raises(facecast.InvalidRequestError) as unknown_voice:
            fc.sessions.speak(session.id, "Hi.", voice=facecast.Voice(id="espeak:xx"))
        assert (unknown_voice.value.code, unknown_voice.value.param) == (
            "unknown_voice",
            "voice.id",
        )
        with pytest.raises(facecast.InvalidRequestError) as empty:
            fc.sessions.speak(session.id, "")
        assert empty.value.param == "text"
        with pytest.raises(facecast.NotFoundError) as no_task:
            fc.sessions.get_speak_task(session.id, new_public_id("spk"))
        assert no_task.value.code == "speak_task_not_found"
        with pytest.raises(facecast.NotFoundError):
            fc.sessions.speak(new_public_id("sess"), "Hi.")

        for n in range(SPEECH_UNFINISHED_MAX):
            fc.sessions.speak(session.id, f"Line {n}.")
        with pytest.raises(facecast.RateLimitError) as full:
            fc.sessions.speak(session.id, "One too many.")
        assert (full.value.status, full.value.code) == (429, "speech_queue_full")
        assert full.value.retry_after is not None

        fc.sessions.end(session.id)
        with pytest.raises(facecast.ConflictError) as ended:
            fc.sessions.speak(session.id, "Too late.")
        assert ended.value.code == "session_not_active"
        with pytest.raises(facecast.ConflictError):
            fc.sessions.interrupt(session.id)
