"""HeyGen and Kaltura clients' flows end to end, on the whole local stack (tools/localstack:
control plane, livekit-server, operator, API configured for managed rooms on that server, the
local GPU node running the real worker as a process). Nothing stands in for anything: a plain
LiveKit client joins the room Facecast made with exactly the URL and token the compat route
answered, sees and hears the real worker, and once the session is ended through the compat
route the operator ends it, the worker leaves and the API's sweep deletes the room.

The shapes and error cases of every route are in api_shim/tests/test_compat_*_on_control_plane
(quick, with a worker stand-in); this module is the proof that the flows work for real.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any, TypeVar

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from kubernetes import client as k8s
from livekit import api as lkapi
from livekit import rtc

from api_shim.managed_rooms import WORKER_IDENTITY
from avatar_crds.ids import to_resource_name
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.speech import SPEAK_TASK_PREFIX
from tools.localstack.stack import NAMESPACE, Stack
from worker_image.tests.support import Subscriber, wait_until, window_rms

pytestmark = [pytest.mark.controlplane, pytest.mark.livekit, pytest.mark.anyio]

T = TypeVar("T")
HEYGEN = "/compat/heygen/v1"
KALTURA = "/compat/kaltura/v1/avatar-session"
SENTENCE = "Hello, I am your avatar, speaking in a room that Facecast made for us."
SPEECH_RMS = 0.02  # of full scale, per 20 ms window: speech energy (espeak-ng: 0.1-0.3)
SPEECH_HEARD_S = 1.0  # of the sentence's ~3 s
WORKER_START_S = 60  # a cold worker process: imports, the avatar, the first frame
ENDED_WITHIN_S = 45  # the operator's finalize, after the worker reports its end
# The API sweeps rooms every 10 s (FACECAST_MANAGED_ROOM_SWEEP_SECONDS's default).
ROOM_DELETED_WITHIN_S = 25


class Viewer(Subscriber):
    """A plain LiveKit client that joins with the URL and token a compat route answered
    (no token minted here), and notes when the worker leaves."""

    worker_left_at: float | None = None

    def __init__(self, identity: str) -> None:
        super().__init__(identity=identity, analyse=mean_level, from_identity=WORKER_IDENTITY)

    async def join_with(self, url: str, token: str) -> None:
        self.room.on("track_subscribed", self._on_track)
        self.room.on("participant_disconnected", self._on_left)
        await self.room.connect(url, token, rtc.RoomOptions(auto_subscribe=True))

    def _on_left(self, participant: rtc.RemoteParticipant) -> None:
        if participant.identity == self.from_identity:
            self.worker_left_at = time.monotonic()

    def brightness(self) -> list[float]:
        return [float(f.value) for f in list(self.video)]

    def speech_seconds(self, since: float) -> float:
        return float((window_rms(self.audio_since(since), 960) > SPEECH_RMS).sum() * 0.02)


def mean_level(frame: npt.NDArray[np.uint8]) -> float:
    """A received frame's mean RGB level: the avatar's picture, not a black frame."""
    return float(frame[..., :3].mean())


async def until(
    check: Callable[[], Awaitable[T | None]], *, within: float, what: str, interval: float = 0.25
) -> T:
    """An async condition (an HTTP call) polled until truthy, with a deadline."""
    deadline = time.monotonic() + within
    while not (result := await check()):
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within:.0f}s waiting for {what}")
        await asyncio.sleep(interval)
    return result


async def room_names(stack: Stack) -> set[str]:
    livekit = stack.livekit
    async with lkapi.LiveKitAPI(livekit.http_url, livekit.api_key, livekit.api_secret) as lk:
        listed = await lk.room.list_rooms(lkapi.ListRoomsRequest())
    return {room.name for room in listed.rooms}


def session_spec(stack: Stack, session_id: str) -> dict[str, Any]:
    with stack.plane.api_client() as api:
        resource: Any = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, AVATAR_SESSION.plural, to_resource_name(session_id, "sess")
        )
    spec: dict[str, Any] = resource["spec"]
    return spec


@contextlib.asynccontextmanager
async def facecast_api(stack: Stack) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.api_url, timeout=30) as http:
        yield http


async def session_of(http: httpx.AsyncClient, stack: Stack, session_id: str) -> dict[str, Any]:
    got = await http.get(f"/v1/sessions/{session_id}", headers=stack.headers())
    assert got.status_code == 200, got.text
    body: dict[str, Any] = got.json()
    return body


async def sees_the_avatar(viewer: Viewer, room: str) -> None:
    """The viewer is in the managed room, may not publish, and gets the worker's video and
    audio track."""
    assert viewer.room.name == room
    assert viewer.room.local_participant.permissions.can_publish is False
    await wait_until(
        lambda: len(viewer.video) >= 10, timeout=WORKER_START_S, what="the avatar's video"
    )
    assert viewer.video_track_at is not None
    assert min(viewer.brightness()[-10:]) > 10, "the frames are black, not the avatar"
    await wait_until(
        lambda: viewer.audio_track_at is not None, timeout=10, what="the avatar's audio track"
    )


async def hears(viewer: Viewer, since: float) -> None:
    await wait_until(
        lambda: viewer.speech_seconds(since) >= SPEECH_HEARD_S,
        timeout=30,
        what=f"{SPEECH_HEARD_S} s of speech at the viewer",
    )


async def ended_and_room_deleted(
    http: httpx.AsyncClient, stack: Stack, session_id: str, viewer: Viewer, room: str
) -> None:
    async def ended() -> dict[str, Any] | None:
        session = await session_of(http, stack, session_id)
        return session if session["status"] == "ended" else None

    session = await until(ended, within=ENDED_WITHIN_S, what=f"{session_id} ended")
    assert session["end_reason"] == "user_ended", session
    await wait_until(
        lambda: viewer.worker_left_at is not None, timeout=10, what="the worker to leave"
    )
    # Out before the room goes: a room deleted under a connected client made LiveKit's native
    # side abort the test process at exit (rc 134 after the tests passed).
    await viewer.leave()

    async def deleted() -> bool:
        return room not in await room_names(stack)

    await until(deleted, within=ROOM_DELETED_WITHIN_S, what=f"room {room} deleted", interval=0.5)


async def end_if_left_running(http: httpx.AsyncClient, stack: Stack, session_id: str) -> None:
    """After a failure: the stack is shared by the session's tests, so end what this made."""
    await http.post(f"/v1/sessions/{session_id}/end", headers=stack.headers())


async def test_heygen_streaming_new_task_and_stop_with_the_real_worker(local_stack: Stack) -> None:
    stack, viewer = local_stack, Viewer("heygen-viewer")
    heygen = {"X-Api-Key": stack.api_key}  # the header HeyGen's clients send
    async with facecast_api(stack) as http:
        new = await http.post(
            f"{HEYGEN}/streaming.new",
            json={
                "quality": "low",
                "avatar_id": stack.avatar_id,
                "voice": {"voice_id": "espeak:en-us", "rate": 1.0},
                "video_encoding": "VP8",
            },
            headers=heygen,
        )
        assert new.status_code == 200, new.text
        assert new.json()["code"] == 100
        data = new.json()["data"]
        session_id, url, token = data["session_id"], data["url"], data["access_token"]
        room = f"facecast-{to_resource_name(session_id, 'sess')}"
        try:
            assert url == stack.livekit.url
            assert session_spec(stack, session_id)["quality"] == "lite"  # `low`: lite
            assert room in await room_names(stack)
            await viewer.join_with(url, token)
            await sees_the_avatar(viewer, room)

            asked = time.monotonic()
            assert viewer.speech_seconds(asked - 2.0) == 0, "speech before any task"
            task = await http.post(
                f"{HEYGEN}/streaming.task",
                json={"session_id": session_id, "text": SENTENCE, "task_type": "repeat"},
                headers=heygen,
            )
            assert task.status_code == 200, task.text
            assert task.json()["data"]["task_id"].startswith(f"{SPEAK_TASK_PREFIX}_")
            await hears(viewer, asked)

            stop = await http.post(
                f"{HEYGEN}/streaming.stop", json={"session_id": session_id}, headers=heygen
            )
            assert (stop.status_code, stop.json()["code"]) == (200, 100), stop.text
            await ended_and_room_deleted(http, stack, session_id, viewer, room)
        except BaseException:
            await end_if_left_running(http, stack, session_id)
            raise
        finally:
            if viewer.room.isconnected():
                await viewer.leave()


async def test_kaltura_init_say_keep_alive_and_end_with_the_real_worker(
    local_stack: Stack,
) -> None:
    stack, viewer = local_stack, Viewer("kaltura-viewer")
    async with facecast_api(stack) as http:
        created = await http.post(
            KALTURA,
            json={
                "visualConfig": {"avatarId": stack.avatar_id},
                "voiceConfig": {"id": "espeak:en-us", "speed": 1.0},
            },
            headers={"Authorization": f"KS {stack.api_key}"},  # the key where the KS goes
        )
        assert created.status_code == 200, created.text
        session_id, session_token = created.json()["sessionId"], created.json()["token"]
        bearer = {"Authorization": f"Bearer {session_token}"}
        room = f"facecast-{to_resource_name(session_id, 'sess')}"
        try:
            # Kaltura has no quality: the best tier served that the demo plan allows.
            assert session_spec(stack, session_id)["quality"] == "lite"
            init = await http.post(f"{KALTURA}/{session_id}/init-client", headers=bearer)
            assert init.status_code == 200, init.text
            webrtc = init.json()["webrtcConfig"]
            assert (webrtc["url"], webrtc["roomName"]) == (stack.livekit.url, room)
            await viewer.join_with(webrtc["url"], webrtc["token"])
            await sees_the_avatar(viewer, room)

            asked = time.monotonic()
            assert viewer.speech_seconds(asked - 2.0) == 0, "speech before say-text"
            said = await http.post(
                f"{KALTURA}/{session_id}/say-text", json={"text": SENTENCE}, headers=bearer
            )
            assert said.status_code == 200, said.text
            assert said.json()["taskId"].startswith(f"{SPEAK_TASK_PREFIX}_")
            await hears(viewer, asked)

            before = session_spec(stack, session_id).get("keepAliveAt")
            alive = await http.post(f"{KALTURA}/{session_id}/keep-alive", headers=bearer)
            assert (alive.status_code, alive.json()) == (200, {"success": True}), alive.text
            assert session_spec(stack, session_id).get("keepAliveAt") not in (None, before)

            end = await http.post(f"{KALTURA}/{session_id}/end-session", headers=bearer)
            assert (end.status_code, end.json()) == (200, {"success": True}), end.text
            await ended_and_room_deleted(http, stack, session_id, viewer, room)
        except BaseException:
            await end_if_left_running(http, stack, session_id)
            raise
        finally:
            if viewer.room.isconnected():
                await viewer.leave()
