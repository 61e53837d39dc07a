"""POST /v1/sessions/{id}/viewer-token against the real kube-apiserver and livekit-server: a
managed room's session gets a fresh viewer token with the rights its creator asked for
(publish only with `client_can_publish`), which joins the room; a session in the customer's
own room, or one that is ending, gets none."""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from livekit import rtc

from api_shim.tests.control_plane import Cluster, error_of
from api_shim.tests.test_compat_heygen_on_control_plane import heygen_api, managed_settings
from testbed.livekit_server import LiveKitServer

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


def claims_of(token: str) -> dict[str, Any]:
    payload = token.split(".")[1]
    claims: dict[str, Any] = json.loads(
        base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    )
    return claims


def managed(avatar_id: str, **transport: Any) -> dict[str, Any]:
    return {
        "avatar_id": avatar_id,
        "quality": "lite",
        "transport": {"type": "managed", **transport},
    }


async def test_viewer_tokens_keep_the_creators_rights(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        watcher = await http.post("/v1/sessions", json=managed(avatar_id), headers=tenant.headers)
        kiosk = await http.post(
            "/v1/sessions",
            json=managed(avatar_id, client_identity="kiosk", client_can_publish=True),
            headers=tenant.headers,
        )
        assert watcher.status_code == kiosk.status_code == 201, (watcher.text, kiosk.text)

        minted = await http.post(
            f"/v1/sessions/{watcher.json()['id']}/viewer-token", headers=tenant.headers
        )
        assert minted.status_code == 200, minted.text
        token = minted.json()
        assert token["object"] == "viewer_token"
        assert (token["url"], token["identity"], token["can_publish"]) == (
            livekit_server.url,
            "facecast-client",
            False,
        )
        video = claims_of(token["token"])["video"]
        assert video["room"] == token["room_name"] == watcher.json()["transport"]["room_name"]
        assert video.get("canPublish") is False
        room = rtc.Room()
        await room.connect(token["url"], token["token"])
        try:
            assert room.name == token["room_name"]
            assert room.local_participant.permissions.can_publish is False
        finally:
            await room.disconnect()

        named = await http.post(
            f"/v1/sessions/{kiosk.json()['id']}/viewer-token",
            json={"identity": "kiosk-2"},
            headers=tenant.headers,
        )
        assert (named.json()["identity"], named.json()["can_publish"]) == ("kiosk-2", True)
        assert claims_of(named.json()["token"])["sub"] == "kiosk-2"
        default = await http.post(
            f"/v1/sessions/{kiosk.json()['id']}/viewer-token", headers=tenant.headers
        )
        assert default.json()["identity"] == "kiosk"

        await http.post(f"/v1/sessions/{watcher.json()['id']}/end", headers=tenant.headers)
        ended = await http.post(
            f"/v1/sessions/{watcher.json()['id']}/viewer-token", headers=tenant.headers
        )
        error_of(ended, 409, "conflict", "session_not_active")
        other = await cluster.tenant()
        theirs = await http.post(
            f"/v1/sessions/{kiosk.json()['id']}/viewer-token", headers=other.headers
        )
        error_of(theirs, 404, "not_found", "session_not_found")


async def test_no_viewer_token_for_the_customers_own_room(
    cluster: Cluster, livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    tenant = await cluster.tenant()
    avatar_id = cluster.avatar(tenant)
    own_room = {
        "avatar_id": avatar_id,
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "support-42",
            "worker_token": "eyJhbGciOiJIUzI1NiJ9.e30.x",
        },
    }
    async with heygen_api(cluster, managed_settings(livekit_server, tmp_path), tmp_path) as http:
        created = await http.post("/v1/sessions", json=own_room, headers=tenant.headers)
        assert created.status_code == 201, created.text
        refused = await http.post(
            f"/v1/sessions/{created.json()['id']}/viewer-token", headers=tenant.headers
        )
        error_of(refused, 400, "invalid_request", "session_not_managed")
