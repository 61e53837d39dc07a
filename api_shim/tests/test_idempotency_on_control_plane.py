"""Idempotency-Key on POST /v1/sessions against the real kube-apiserver: replays, reuse
with another body, concurrent retries, tenant scope and refusals."""

from __future__ import annotations

import asyncio

import pytest

from api_shim.tests.control_plane import Cluster, RequestFactory, _create, _created, error_of

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


# --- idempotency ---------------------------------------------------------------------------------


async def test_a_replay_returns_the_original_session_even_after_a_restart(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme))
    async with cluster.api() as http:
        first = await _create(http, acme, body, key="order-1")
        replay = await _create(http, acme, body, key="order-1")
    async with cluster.api() as restarted:
        after_restart = await _create(restarted, acme, body, key="order-1")
    assert first.status_code == replay.status_code == after_restart.status_code == 201
    assert first.json()["id"] == replay.json()["id"] == after_restart.json()["id"]
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(cluster.sessions_of(acme)) == 1


async def test_a_reused_key_with_another_body_is_409(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        await _create(http, acme, make_request(avatar_id=avatar), key="order-2")
        response = await _create(
            http, acme, make_request(avatar_id=avatar, quality="mock"), key="order-2"
        )
    error = error_of(response, 409, "conflict", "idempotency_key_reused")
    assert error["param"] == "Idempotency-Key"
    assert len(cluster.sessions_of(acme)) == 1


async def test_concurrent_retries_with_one_key_make_one_session(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme))
    async with cluster.api() as http:
        responses = await asyncio.gather(
            *(_create(http, acme, body, key="order-3") for _ in range(5))
        )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(cluster.sessions_of(acme)) == 1


async def test_keys_are_scoped_to_the_tenant(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    async with cluster.api() as http:
        mine = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)), key="same")
        theirs = await _create(
            http, globex, make_request(avatar_id=cluster.avatar(globex)), key="same"
        )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


async def test_a_refused_request_is_not_remembered(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=1)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        first = await _created(http, acme, make_request(avatar_id=avatar))
        refused = await _create(http, acme, make_request(avatar_id=avatar), key="retry-me")
        assert refused.status_code == 429
        await http.delete(f"/v1/sessions/{first['id']}", headers=acme.headers)
        retried = await _create(http, acme, make_request(avatar_id=avatar), key="retry-me")
    assert retried.status_code == 201
