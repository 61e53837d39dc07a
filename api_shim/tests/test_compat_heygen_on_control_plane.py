"""HeyGen Streaming at /compat/heygen against the real kube-apiserver and a real livekit-server
(the platform's own, configured for managed rooms): streaming.new answers a URL and a token
with which a plain LiveKit client joins the room Facecast made and receives video published
in it with the worker's token; streaming.stop ends the session and, once it has ended, the
sweep deletes the room (asked of the server's RoomService). Answers are validated against the
page's response fields (compat_schemas/heygen_*.json). A named stand-in publishes the video
and the test writes `ended` where the operator would: the same flow with the real worker and
operator is tests/compat/test_compat_on_local_stack.py."""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from livekit import api as livekit_api
from livekit import rtc

from api_shim.app import create_app
from api_shim.settings import Settings
from api_shim.tests.control_plane import BASE_SETTINGS, Cluster
from avatar_crds import contract
from avatar_crds.ids import to_resource_name
from testbed.livekit_server import LiveKitServer
from testbed.tenants import TenantKey

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

SCHEMAS = Path(__file__).parent / "compat_schemas"
HEYGEN = "/compat/heygen/v1"
WITHIN = 30.0


def conforms(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    jsonschema_rs.validate(json.loads((SCHEMAS / f"{name}.json").read_text()), body)
    return body


def heygen_error(response: httpx.Response, status: int, code: str) -> str:
    body = conforms(response, status, "heygen_response")
    assert body["code"] == status, body
    assert body["data"] is None, body
    message: str = body["message"]
    assert message.startswith(f"{code}: "), body
    return message


def managed_settings(server: LiveKitServer, tmp_path: Path) -> Settings:
    secret_file = tmp_path / "livekit-api-secret"
    secret_file.write_text(server.api_secret)
    return replace(
        BASE_SETTINGS,
        managed_livekit_url=server.url,
        managed_livekit_api_key=server.api_key,
        managed_livekit_api_secret_file=str(secret_file),
        managed_room_sweep_seconds=0.2,
        # The platform's LiveKit on loopback: allowed, as an in-cluster one would be.
        transport_allowed_cidrs="127.0.0.1/32",
    )


@asynccontextmanager
async def heygen_api(
    cluster: Cluster, settings: Settings, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """The app with its lifespan running (the room sweep starts there)."""
    app = create_app(
        replace(settings, namespace=cluster.namespace, avatar_store=str(tmp_path)),
        cluster.kube,
        indexes=cluster.indexes,
    )
    async with app.router.lifespan_context(app):
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


async def room_names(server: LiveKitServer) -> set[str]:
    async with livekit_api.LiveKitAPI(server.http_url, server.api_key, server.api_secret) as lk:
        listed = await lk.room.list_rooms(livekit_api.ListRoomsRequest())
    return {room.name for room in listed.rooms}


def page_example(avatar_id: str) -> dict[str, Any]:
    """The page's request fields, with a Facecast avatar."""
    return {
        "quality": "medium",
        "avatar_id": avatar_id,
        "voice": {"voice_id": "espeak:en-us", "rate": 1.0, "emotion": "Friendly"},
        "video_encoding": "VP8",
        "knowledge_base": "You are a helpful assistant.",
        "disable_idle_timeout": False,
    }


async def publish_video_as_worker(url: str, token: str) -> tuple[rtc.Room, asyncio.Task[None]]:
    """A stand-in for the worker (no worker process runs in this test): joins with the token
    Facecast minted for it and publishes a video track, so the viewer's side is real."""
    room = rtc.Room()
    await room.connect(url, token)
    source = rtc.VideoSource(64, 48)
    track = rtc.LocalVideoTrack.create_video_track("avatar", source)
    await room.local_participant.publish_track(
        track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_CAMERA)
    )
    frame = rtc.VideoFrame(64, 48, rtc.VideoBufferType.RGBA, bytes(64 * 48 * 4))

    async def feed() -> None:
        while True:
            source.capture_frame(frame)
            await asyncio.sleep(1 / 15)  # the frame rate, not a wait for anything

    return room, asyncio.create_task(feed())


async def test_streaming_new_joins_a_managed_room_and_stop_deletes_it(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant: TenantKey = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    settings = managed_settings(livekit_server, tmp_path)
    async with heygen_api(cluster, settings, tmp_path) as http:
        new = await http.post(
            f"{HEYGEN}/streaming.new", json=page_example(avatar_id), headers=tenant.headers
        )
        data = conforms(new, 200, "heygen_new_session")["data"]
        assert new.json()["code"] == 100
        session_id, url, token = data["session_id"], data["url"], data["access_token"]
        assert url == livekit_server.url
        name = to_resource_name(session_id, "sess")
        room = f"facecast-{name}"
        assert room in await room_names(livekit_server)

        # The resource: an ordinary LiveKit session in that room; no token anywhere in it.
        resource = cluster.session_object(session_id)
        assert resource is not None
        assert resource["spec"]["transport"]["livekit"]["roomName"] == room
        assert resource["spec"]["idleTimeoutSeconds"] == 120
        assert resource["spec"]["voice"] == {"id": "espeak:en-us", "speed": 1.0}
        assert token not in json.dumps(resource)
        secret = cluster.token_secret(session_id)
        worker_token = base64.b64decode(secret.data[contract.TOKEN_SECRET_KEY]).decode()
        assert worker_token not in json.dumps(resource)

        # A plain LiveKit client joins with what streaming.new answered, and sees the video.
        viewer = rtc.Room()
        seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_track(track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
            if track.kind == rtc.TrackKind.KIND_VIDEO and not seen.done():
                seen.set_result(participant.identity)

        viewer.on("track_subscribed", on_track)
        await viewer.connect(url, token, rtc.RoomOptions(auto_subscribe=True))
        worker, feeding = await publish_video_as_worker(url, worker_token)
        try:
            assert viewer.name == room
            assert viewer.local_participant.permissions.can_publish is False
            assert await asyncio.wait_for(seen, WITHIN) == "facecast-worker"

            # GET shows the managed room, never the token again.
            got = await http.get(f"/v1/sessions/{session_id}", headers=tenant.headers)
            assert got.json()["transport"]["type"] == "managed"
            assert got.json()["transport"]["client_token"] is None
            assert token not in got.text

            listed = await http.get(f"{HEYGEN}/streaming.list", headers=tenant.headers)
            sessions = conforms(listed, 200, "heygen_response")["data"]["sessions"]
            assert session_id in {s["session_id"] for s in sessions}
            alive = await http.post(
                f"{HEYGEN}/streaming.keep_alive",
                json={"session_id": session_id},
                headers=tenant.headers,
            )
            assert conforms(alive, 200, "heygen_response")["code"] == 100
            task = await http.post(
                f"{HEYGEN}/streaming.task",
                json={"session_id": session_id, "text": "Hello", "task_type": "repeat"},
                headers=tenant.headers,
            )
            task_id = conforms(task, 200, "heygen_response")["data"]["task_id"]
            spoken = await http.get(
                f"/v1/sessions/{session_id}/speak/{task_id}", headers=tenant.headers
            )
            assert spoken.json()["text"] == "Hello", spoken.text
            chat = await http.post(
                f"{HEYGEN}/streaming.task",
                json={"session_id": session_id, "text": "Hi?", "task_type": "chat"},
                headers=tenant.headers,
            )
            assert "Facecast has none" in heygen_error(chat, 400, "task_type_not_supported")
            cut = await http.post(
                f"{HEYGEN}/streaming.interrupt",
                json={"session_id": session_id},
                headers=tenant.headers,
            )
            assert conforms(cut, 200, "heygen_response")["code"] == 100
            after = await http.get(
                f"/v1/sessions/{session_id}/speak/{task_id}", headers=tenant.headers
            )
            assert after.json()["state"] == "interrupted", after.text

            stop = await http.post(
                f"{HEYGEN}/streaming.stop",
                json={"session_id": session_id},
                headers=tenant.headers,
            )
            assert conforms(stop, 200, "heygen_response")["code"] == 100
            stopped = cluster.session_object(session_id)
            assert stopped is not None
            assert stopped["spec"]["endRequestedAt"] is not None
            # Ending is the operator's: its stand-in records the end the worker would report.
            assert room in await room_names(livekit_server)  # not before it has ended
            cluster.set_session_status(session_id, {"phase": "ended", "reason": "user_ended"})
            deadline = asyncio.get_running_loop().time() + WITHIN
            while room in await room_names(livekit_server):
                assert asyncio.get_running_loop().time() < deadline, "room not deleted"
                await asyncio.sleep(0.2)
        finally:
            feeding.cancel()
            await worker.disconnect()
            await viewer.disconnect()


async def test_streaming_new_takes_every_documented_field(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    """The page's other values: each quality, H264, the v2 beta fields, ElevenLabs settings
    and emotions (accepted, without effect), and no idle timeout."""
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    everything = {
        **page_example(avatar_id),
        "quality": "high",
        "video_encoding": "H264",
        "version": "v2",
        "knowledge_base_id": "kb-1",
        "disable_idle_timeout": True,
        "voice": {
            "voice_id": "espeak:en-us",
            "rate": 1.5,
            "emotion": "Serious",
            "elevenlabs_settings": {
                "stability": 0.5,
                "similarity_boost": 0.5,
                "style": 0.1,
                "use_speaker_boost": False,
            },
        },
    }
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        new = await http.post(f"{HEYGEN}/streaming.new", json=everything, headers=tenant.headers)
        low = await http.post(
            f"{HEYGEN}/streaming.new",
            json={"quality": "low", "avatar_id": avatar_id},
            headers=tenant.headers,
        )
        for answer in (new, low):  # the rooms go with their sessions
            data = conforms(answer, 200, "heygen_new_session")["data"]
            await http.post(
                f"{HEYGEN}/streaming.stop",
                json={"session_id": data["session_id"]},
                headers=tenant.headers,
            )
    spec = cluster.session_object(new.json()["data"]["session_id"])["spec"]  # type: ignore[index]
    assert spec["quality"] == "lite"  # `high` without the model weights: the best tier served
    assert spec["video"]["codec"] == "h264"
    assert spec.get("idleTimeoutSeconds") is None
    assert spec["voice"] == {"id": "espeak:en-us", "speed": 1.5}
    plain = cluster.session_object(low.json()["data"]["session_id"])["spec"]  # type: ignore[index]
    assert (plain["quality"], plain["video"]["codec"]) == ("lite", "vp8")
    assert plain["idleTimeoutSeconds"] == 120  # HeyGen's default: 2 minutes
    assert "voice" not in plain or plain["voice"] is None


async def test_heygen_refusals_in_heygens_shape(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    async with heygen_api(cluster, BASE_SETTINGS, tmp_path) as http:
        unconfigured = await http.post(
            f"{HEYGEN}/streaming.new", json=page_example(avatar_id), headers=tenant.headers
        )
        message = heygen_error(unconfigured, 400, "managed_rooms_not_configured")
        assert "LiveKit server" in message
        no_key = await http.post(f"{HEYGEN}/streaming.new", json=page_example(avatar_id))
        heygen_error(no_key, 401, no_key.json()["message"].split(":")[0])
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        default = await http.post(
            f"{HEYGEN}/streaming.new", json={"quality": "low"}, headers=tenant.headers
        )
        assert "no default avatar" in heygen_error(default, 400, "avatar_required")
        unknown = await http.post(
            f"{HEYGEN}/streaming.stop",
            json={"session_id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"},
            headers=tenant.headers,
        )
        heygen_error(unknown, 404, "session_not_found")
        slow = {**page_example(avatar_id), "voice": {"voice_id": "espeak:en-us", "rate": 3.0}}
        too_fast = await http.post(f"{HEYGEN}/streaming.new", json=slow, headers=tenant.headers)
        assert too_fast.status_code == 400
        assert too_fast.json()["code"] == 400
    assert cluster.sessions_of(tenant) == []  # nothing was made for the refused requests
