"""Whether a session is admitted, against the real kube-apiserver: the plan's qualities,
durations, minutes and concurrency, the avatar it names, the namespace's capacity and
the rate limit; and what /v1/usage reports of them."""

from __future__ import annotations

import asyncio
import uuid
from dataclasses import replace
from typing import Any

import pytest

from api_shim.kube import Kube
from api_shim.tests.control_plane import (
    BASE_SETTINGS,
    WAIT_TIMEOUT,
    Cluster,
    RequestFactory,
    _create,
    _created,
    _index_sees,
    error_of,
    eventually,
)
from avatar_crds.ids import new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR
from avatar_crds.meta import GROUP, VERSION

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


# --- plan rules ----------------------------------------------------------------------------------


async def test_a_quality_outside_the_plan_is_403(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(qualities=("mock",))
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)))
    error = error_of(response, 403, "permission", "quality_not_allowed")
    assert error["param"] == "quality"
    assert cluster.sessions_of(acme) == []


async def test_max_duration_is_capped_by_the_plan(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_duration=300)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        too_long = await _create(
            http, acme, make_request(avatar_id=avatar, max_duration_seconds=600)
        )
        defaulted = await _created(http, acme, make_request(avatar_id=avatar))
    error = error_of(too_long, 422, "unprocessable", "max_duration_exceeds_plan")
    assert error["param"] == "max_duration_seconds"
    assert defaulted["max_duration_seconds"] == 300
    resource = cluster.session_object(defaulted["id"])
    assert resource is not None
    assert resource["spec"]["maxDurationSeconds"] == 300


async def test_exhausted_minutes_are_403_quota_exceeded(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(minutes=10)
    cluster.set_seconds_used(acme, 600.0)
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)))
    error_of(response, 403, "quota_exceeded", "minutes_exhausted")


async def test_the_concurrency_limit_is_429_with_retry_after_until_a_slot_frees(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=1)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        first = await _created(http, acme, make_request(avatar_id=avatar))
        refused = await _create(http, acme, make_request(avatar_id=avatar))
        error_of(refused, 429, "quota_exceeded", "concurrency_limit_reached")
        assert int(refused.headers["retry-after"]) >= 1
        cluster.set_session_status(
            first["id"], {"phase": "failed", "reason": "unschedulable", "message": "no GPU"}
        )
        # Admission reads the watched index, a watch's delay behind the status write.
        await _index_sees(cluster, acme, first["id"], "failed")
        again = await _create(http, acme, make_request(avatar_id=avatar))
    assert again.status_code == 201


async def test_concurrent_creates_never_exceed_the_limit(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=2)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        responses = await asyncio.gather(
            *(_create(http, acme, make_request(avatar_id=avatar)) for _ in range(6))
        )
    assert sorted(response.status_code for response in responses) == [201, 201, 429, 429, 429, 429]
    assert len(cluster.sessions_of(acme)) == 2


async def test_the_admission_index_follows_the_cluster_and_admits_without_listing(
    cluster: Cluster, make_request: RequestFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its watch is in sync, creates are admitted or refused from memory, and the index
    follows creates, status changes and deletes."""
    acme = await cluster.tenant(max_concurrent=3)
    avatar = cluster.avatar(acme)
    index = cluster.indexes.sessions
    index.start()
    await eventually(lambda: index.synced, within=WAIT_TIMEOUT, what="the index to sync")
    lists = 0
    list_sessions = cluster.kube.list_sessions

    async def counted(selector: str) -> list[Any]:
        nonlocal lists
        lists += 1
        return await list_sessions(selector)

    monkeypatch.setattr(cluster.kube, "list_sessions", counted)
    async with cluster.api() as http:
        responses = await asyncio.gather(
            *(_create(http, acme, make_request(avatar_id=avatar)) for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * 5
        assert lists == 0
        first, second, _ = [r.json()["id"] for r in responses if r.status_code == 201]

        def active() -> int:
            counts = index.counts(acme.name)
            return -1 if counts is None else counts.active

        await eventually(lambda: active() == 3, within=WAIT_TIMEOUT, what="3 active")
        cluster.set_session_status(
            first, {"phase": "failed", "reason": "unschedulable", "message": "no GPU"}
        )
        await eventually(lambda: active() == 2, within=WAIT_TIMEOUT, what="2 active")
        assert (await http.delete(f"/v1/sessions/{second}", headers=acme.headers)).is_success
        await eventually(lambda: active() == 1, within=WAIT_TIMEOUT, what="1 active")
        lists = 0
        again = await _create(http, acme, make_request(avatar_id=avatar))
    assert again.status_code == 201, again.text
    assert lists == 0
    assert len([s for s in cluster.sessions_of(acme) if "deletionTimestamp" not in s["metadata"]])


async def test_sessions_find_their_avatar_in_the_watched_cache_and_a_deleted_one_is_404(
    cluster: Cluster, make_request: RequestFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the avatar index has seen an avatar, creating a session reads nothing from the API
    server for it; when the avatar is deleted (by anyone) the index drops it, and the session
    is refused after a read that confirms it is gone."""
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    name = to_resource_name(avatar, "av")
    index = cluster.indexes.avatars
    await eventually(lambda: index.get(name), within=WAIT_TIMEOUT, what="the index to see it")
    reads = 0
    get_avatar = cluster.kube.get_avatar

    async def counted(avatar_name: str) -> Any:
        nonlocal reads
        reads += 1
        return await get_avatar(avatar_name)

    monkeypatch.setattr(cluster.kube, "get_avatar", counted)
    async with cluster.api() as http:
        await _created(http, acme, make_request(avatar_id=avatar))
        assert reads == 0
        cluster.custom.delete_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, AVATAR.plural, name
        )
        await eventually(
            lambda: index.get(name) is None or None, within=WAIT_TIMEOUT, what="it to go"
        )
        response = await _create(http, acme, make_request(avatar_id=avatar))
    error_of(response, 404, "not_found", "avatar_not_found")
    assert reads == 1


async def test_unknown_or_foreign_avatars_are_404_but_public_ones_are_usable(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    private, public = cluster.avatar(globex), cluster.avatar(globex, visibility="public")
    async with cluster.api() as http:
        for avatar in (private, new_public_id("av")):
            response = await _create(http, acme, make_request(avatar_id=avatar))
            assert error_of(response, 404, "not_found", "avatar_not_found")["param"] == "avatar_id"
        usable = await _create(http, acme, make_request(avatar_id=public))
    assert usable.status_code == 201


async def test_usage_reports_concurrency_and_minutes(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=3, minutes=60)
    cluster.set_seconds_used(acme, 600.0)
    async with cluster.api() as http:
        for _ in range(2):
            await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        response = await http.get("/v1/usage", headers={"Authorization": f"Bearer {acme.key}"})
    assert response.status_code == 200
    usage = response.json()
    assert usage["object"] == "usage"
    assert usage["concurrency"] == {"current": 2, "max": 3, "available": 1}
    assert usage["minutes"] == {"included": 60, "used": 10.0, "total_remaining": 50.0}


# --- capacity and rate limits --------------------------------------------------------------------


async def test_a_full_queue_is_503_at_capacity_with_retry_after(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    """Capacity counts waiting sessions namespace-wide, so this test gets its own namespace."""
    namespace = f"cap-{uuid.uuid4().hex[:10]}"
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    try:
        kube = Kube(cluster.admin_client.configuration, namespace, timeout=10.0)
        isolated = Cluster(kube=kube, admin_client=cluster.admin_client, namespace=namespace)
        acme, globex = await isolated.tenant(), await isolated.tenant()
        settings = replace(BASE_SETTINGS, max_queued=2, at_capacity_retry_after_seconds=7)
        async with isolated.api(settings) as http:
            await _created(http, acme, make_request(avatar_id=isolated.avatar(acme)))
            await _created(http, globex, make_request(avatar_id=isolated.avatar(globex)))
            response = await _create(http, acme, make_request(avatar_id=isolated.avatar(acme)))
        error_of(response, 503, "service_unavailable", "at_capacity")
        assert response.headers["retry-after"] == "7"
    finally:
        await isolated.indexes.aclose()
        await kube.aclose()
        cluster.core.delete_namespace(namespace)


async def test_the_rate_limit_is_429_rate_limited_with_retry_after(cluster: Cluster) -> None:
    acme = await cluster.tenant(rpm=2)
    globex = await cluster.tenant(rpm=2)
    async with cluster.api() as http:
        assert (await http.get("/v1/usage", headers=acme.headers)).status_code == 200
        assert (await http.get("/v1/sessions", headers=acme.headers)).status_code == 200
        limited = await http.get("/v1/usage", headers=acme.headers)
        other = await http.get("/v1/usage", headers=globex.headers)
    error_of(limited, 429, "rate_limit", "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200
