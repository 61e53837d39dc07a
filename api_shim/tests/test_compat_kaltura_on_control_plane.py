"""Kaltura Avatar at /compat/kaltura against the real kube-apiserver and a real livekit-server
(the platform's own, for managed rooms): the page's create examples, sent as printed (only the
host, the key and the ids changed), answer the page's shape (compat_schemas/kaltura_*.json);
the session token then drives init-client (a plain LiveKit client joins with what it answers
and receives the video a worker stand-in publishes), say-text, keep-alive and end-session, and
the room is deleted once the session has ended. The token works for its own session only, and
not once expired; every error is Kaltura's `{"success": false, "error"}`. The flow with the
real worker and operator (no stand-in) is tests/compat/test_compat_on_local_stack.py."""

from __future__ import annotations

import asyncio
import base64
import json
import time
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from livekit import rtc

from api_shim.compat.kaltura_token import SessionClaims, SessionTokens
from api_shim.compat.livekit_token import room_grant
from api_shim.tests.control_plane import BASE_SETTINGS, Cluster
from api_shim.tests.test_compat_heygen_on_control_plane import (
    heygen_api,
    managed_settings,
    publish_video_as_worker,
    room_names,
)
from avatar_crds import contract
from avatar_crds.ids import to_resource_name
from testbed.livekit_server import LiveKitServer
from testbed.tenants import TenantKey

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

SCHEMAS = Path(__file__).parent / "compat_schemas"
KALTURA = "/compat/kaltura/v1/avatar-session"
WITHIN = 30.0


def conforms(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    jsonschema_rs.validate(json.loads((SCHEMAS / f"{name}.json").read_text()), body)
    return body


def kaltura_error(response: httpx.Response, status: int) -> str:
    message: str = conforms(response, status, "kaltura_error")["error"]
    return message


def ks(tenant: TenantKey) -> dict[str, str]:
    """The page's headers, with a Facecast key where the KS goes."""
    return {"Authorization": f"KS {tenant.key}", "Content-Type": "application/json"}


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}


def curl_example(avatar_id: str) -> dict[str, Any]:
    """The cURL, fetch and requests examples' body (the same in all three)."""
    return {
        "visualConfig": {"avatarId": avatar_id},
        "voiceConfig": {"id": "espeak:en-us", "speed": 1.0},
    }


def axios_example(avatar_id: str) -> dict[str, Any]:
    """The axios example's body: no speed."""
    return {"visualConfig": {"avatarId": avatar_id}, "voiceConfig": {"id": "espeak:en-us"}}


async def test_kaltura_session_flow_on_a_managed_room(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        created = conforms(
            await http.post(KALTURA, json=curl_example(avatar_id), headers=ks(tenant)),
            200,
            "kaltura_session_created",
        )
        session_id, token = created["sessionId"], created["token"]
        room = f"facecast-{to_resource_name(session_id, 'sess')}"
        assert room in await room_names(livekit_server)
        resource = cluster.session_object(session_id)
        assert resource is not None
        assert resource["spec"]["voice"] == {"id": "espeak:en-us", "speed": 1.0}
        assert resource["spec"]["quality"] == "lite"  # the best tier the plan allows
        assert token not in json.dumps(resource)
        assert tenant.key not in token  # the session token is not the key in disguise

        init = await http.post(f"{KALTURA}/{session_id}/init-client", headers=bearer(token))
        assert init.status_code == 200, init.text
        config = init.json()
        assert config["success"] is True
        assert config["sessionId"] == session_id
        webrtc = config["webrtcConfig"]
        assert (webrtc["url"], webrtc["roomName"]) == (livekit_server.url, room)
        # Each call mints one (nothing is stored): a second init-client answers one too.
        again = await http.post(f"{KALTURA}/{session_id}/init-client", headers=bearer(token))
        assert room_grant(again.json()["webrtcConfig"]["token"]).room == room

        secret = cluster.token_secret(session_id)
        worker_token = base64.b64decode(secret.data[contract.TOKEN_SECRET_KEY]).decode()
        viewer = rtc.Room()
        seen: asyncio.Future[str] = asyncio.get_running_loop().create_future()

        def on_track(track: rtc.Track, _pub: Any, participant: rtc.RemoteParticipant) -> None:
            if track.kind == rtc.TrackKind.KIND_VIDEO and not seen.done():
                seen.set_result(participant.identity)

        viewer.on("track_subscribed", on_track)
        await viewer.connect(webrtc["url"], webrtc["token"], rtc.RoomOptions(auto_subscribe=True))
        worker, feeding = await publish_video_as_worker(webrtc["url"], worker_token)
        try:
            assert viewer.local_participant.permissions.can_publish is False
            assert await asyncio.wait_for(seen, WITHIN) == "facecast-worker"

            # The page's say-text example, as printed.
            said = await http.post(
                f"{KALTURA}/{session_id}/say-text",
                headers=bearer(token),
                content=json.dumps({"text": "Hello!"}),
            )
            assert said.status_code == 200, said.text
            task = await http.get(
                f"/v1/sessions/{session_id}/speak/{said.json()['taskId']}", headers=tenant.headers
            )
            assert (task.json()["text"], task.json()["state"]) == ("Hello!", "queued")

            alive = await http.post(f"{KALTURA}/{session_id}/keep-alive", headers=bearer(token))
            assert alive.json() == {"success": True}
            kept = cluster.session_object(session_id)
            assert kept is not None
            assert kept["spec"]["keepAliveAt"] is not None

            end = await http.post(f"{KALTURA}/{session_id}/end-session", headers=bearer(token))
            assert end.json() == {"success": True}
            ended = cluster.session_object(session_id)
            assert ended is not None
            assert ended["spec"]["endRequestedAt"] is not None
            late = await http.post(f"{KALTURA}/{session_id}/init-client", headers=bearer(token))
            assert "ending" in kaltura_error(late, 409)
            # Ending is the operator's: this stands in for its record of the worker's end.
            cluster.set_session_status(session_id, {"phase": "ended", "reason": "user_ended"})
            deadline = asyncio.get_running_loop().time() + WITHIN
            while room in await room_names(livekit_server):
                assert asyncio.get_running_loop().time() < deadline, "room not deleted"
                await asyncio.sleep(0.2)
        finally:
            feeding.cancel()
            await worker.disconnect()
            await viewer.disconnect()


async def test_kaltura_axios_example_and_default_voice(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        axios = await http.post(KALTURA, json=axios_example(avatar_id), headers=ks(tenant))
        session_id = conforms(axios, 200, "kaltura_session_created")["sessionId"]
        resource = cluster.session_object(session_id)
        assert resource is not None
        assert resource["spec"]["voice"] == {"id": "espeak:en-us", "speed": 1.0}
        bare = await http.post(
            KALTURA, json={"visualConfig": {"avatarId": avatar_id}}, headers=ks(tenant)
        )
        bare_session = cluster.session_object(
            conforms(bare, 200, "kaltura_session_created")["sessionId"]
        )
        assert bare_session is not None
        assert bare_session["spec"].get("voice") is None


async def test_the_session_token_is_for_its_session_only_and_expires(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    other_tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    settings = managed_settings(livekit_server, tmp_path)
    async with heygen_api(cluster, settings, tmp_path) as http:
        first = (await http.post(KALTURA, json=curl_example(avatar_id), headers=ks(tenant))).json()
        second = (await http.post(KALTURA, json=curl_example(avatar_id), headers=ks(tenant))).json()

        crossed = await http.post(
            f"{KALTURA}/{second['sessionId']}/end-session", headers=bearer(first["token"])
        )
        assert kaltura_error(crossed, 403) == (
            "Kaltura Session not authorized: This session token is for another session."
        )
        still = cluster.session_object(second["sessionId"])
        assert still is not None
        assert still["spec"].get("endRequestedAt") is None

        # The installation's key, as any replica derives it, minting one that has run out.
        tokens = SessionTokens.of(livekit_server.api_secret)
        claims = SessionClaims(
            session_id=first["sessionId"],
            tenant=tenant.name,
            key_id=tokens.verify(first["token"], now=int(time.time())).key_id,
            expires_at=int(time.time()) - 1,
        )
        expired = tokens.mint(claims, now=int(time.time()) - 600)
        late = await http.post(
            f"{KALTURA}/{first['sessionId']}/keep-alive", headers=bearer(expired)
        )
        assert kaltura_error(late, 401) == "The session token has expired."

        for wrong in (tenant.key, first["token"][:-4] + "AAAA", "x.y.z"):
            refused = await http.post(
                f"{KALTURA}/{first['sessionId']}/keep-alive", headers=bearer(wrong)
            )
            assert kaltura_error(refused, 401) == "Invalid session token."
        no_token = await http.post(f"{KALTURA}/{first['sessionId']}/say-text", json={"text": "x"})
        assert "No session token" in kaltura_error(no_token, 401)

        # Another tenant's key cannot reach the session either (its own KS makes its own).
        other = await http.post(
            f"{KALTURA}/{first['sessionId']}/keep-alive",
            headers={"Authorization": f"KS {other_tenant.key}"},
        )
        assert kaltura_error(other, 401)


async def test_kaltura_refusals_in_kalturas_shape(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    async with heygen_api(cluster, BASE_SETTINGS, tmp_path) as http:
        unconfigured = await http.post(KALTURA, json=curl_example(avatar_id), headers=ks(tenant))
        assert "LiveKit server" in kaltura_error(unconfigured, 400)
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        for headers in (
            {},
            {"Authorization": "KS fc_not-a-key"},
            {"Authorization": f"Bearer {tenant.key}"},  # a key, but not in the KS slot
        ):
            refused = await http.post(KALTURA, json=curl_example(avatar_id), headers=headers)
            assert kaltura_error(refused, 401) == "Invalid Kaltura Session"
        unknown = await http.post(
            KALTURA,
            json=curl_example("av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"),
            headers=ks(tenant),
        )
        assert "No avatar av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3" in kaltura_error(unknown, 404)
        voice = {**curl_example(avatar_id), "voiceConfig": {"id": "voice-456", "speed": 1.0}}
        assert "voice-456" in kaltura_error(
            await http.post(KALTURA, json=voice, headers=ks(tenant)), 400
        )
        missing = await http.post(KALTURA, json={"voiceConfig": {}}, headers=ks(tenant))
        assert "visualConfig" in kaltura_error(missing, 400)
        cluster.set_seconds_used(tenant, 60 * 60)
        exhausted = await http.post(KALTURA, json=curl_example(avatar_id), headers=ks(tenant))
        assert kaltura_error(exhausted, 403).startswith("Kaltura Session not authorized: ")
    assert cluster.sessions_of(tenant) == []  # nothing was made for the refused requests
