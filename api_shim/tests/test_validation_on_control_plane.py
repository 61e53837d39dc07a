"""Malformed requests over HTTP, against the real kube-apiserver: each is a 400 naming
what is wrong."""

from __future__ import annotations

import base64
from typing import Any

import pytest

from api_shim import idempotency
from api_shim.tests.control_plane import Cluster, RequestFactory, _create, error_of

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


# --- request validation over HTTP ----------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata", [[1, 2], "text", 42, None, {"_avatar.x": 1}, {"blob": "x" * 9000}]
)
async def test_bad_metadata_is_400_naming_metadata(
    cluster: Cluster, make_request: RequestFactory, metadata: object
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(metadata=metadata))
    assert error_of(response, 400, "invalid_request", "invalid_parameter")["param"] == "metadata"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"aspect_ratio": "16:9"}, "aspect_ratio"),
        ({"quality": "ultra"}, "quality"),
        ({"idle_timeout_seconds": 0}, "idle_timeout_seconds"),
        ({"idle_timeout_seconds": 601}, "idle_timeout_seconds"),
        ({"max_duration_seconds": 3601}, "max_duration_seconds"),
        ({"transport": {"type": "zoom", "url": "wss://x.example.com"}}, "transport"),
        (
            {
                "transport": {
                    "type": "livekit",
                    "url": "http://x",
                    "room_name": "r",
                    "worker_token": "t",
                }
            },
            "transport.url",
        ),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    cluster: Cluster, make_request: RequestFactory, overrides: dict[str, Any], param: str
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(**overrides))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_a_body_that_is_not_json_is_400(cluster: Cluster) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        broken = await http.post(
            "/v1/sessions",
            content=b'{"quality": ',
            headers={**acme.headers, "content-type": "application/json"},
        )
        empty = await http.post("/v1/sessions", headers=acme.headers)
        bad_key = await http.post(
            "/v1/sessions", json={}, headers={**acme.headers, idempotency.HEADER: "x" * 300}
        )
    error_of(broken, 400, "invalid_request", "invalid_json")
    error_of(empty, 400, "invalid_request", "parameter_missing")
    assert bad_key.status_code == 400


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "sess_not-a-ulid"}, "cursor"),
        ({"cursor": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"v1:../../secrets").decode()}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_400_naming_them(
    cluster: Cluster, params: dict[str, str], param: str
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await http.get("/v1/sessions", params=params, headers=acme.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param
