"""GET /v1/sessions, GET /v1/usage and a refused create read the watched session index, not the
API server: counted by the real kube-apiserver's own `apiserver_request_total`, with 200
sessions in the namespace. The same count with the index held out of sync shows the fallback
LISTs (and that the count sees them)."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from kubernetes import client

from api_shim.app import create_app
from api_shim.deps import Indexes
from api_shim.kube import Kube
from api_shim.sessions import mapping
from api_shim.sessions.schemas import CreateSessionRequest
from api_shim.tests.control_plane import BASE_SETTINGS
from avatar_crds.ids import new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from testbed.metrics import samples
from testbed.objects import avatar_manifest
from testbed.tenants import TenantKey, new_tenant
from testbed.wait import wait_for_async

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

SESSIONS = 200
WAIT_SECONDS = 60.0
SETTINGS = BASE_SETTINGS


@dataclass
class Namespace:
    name: str
    admin_client: client.ApiClient
    tenant: TenantKey
    avatar_id: str


@pytest.fixture(scope="module")
def populated(control_plane: Any, api_client: client.ApiClient, crds: None) -> Iterator[Namespace]:
    """A namespace of its own with one tenant (limit: exactly its 200 sessions) and its
    sessions, made directly (no index of any API instance has seen them being made)."""
    core: Any = client.CoreV1Api(api_client)
    custom = client.CustomObjectsApi(api_client)
    name = f"reads-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    try:
        maker = Kube(api_client.configuration, name, timeout=30.0)
        tenant = asyncio.run(new_tenant(maker, max_concurrent=SESSIONS, requests_per_minute=6000))
        maker.close()
        avatar_id = new_public_id("av")
        custom.create_namespaced_custom_object(
            GROUP, VERSION, name, AVATAR.plural, avatar_manifest(avatar_id, tenant.name)
        )
        request = CreateSessionRequest.model_validate(_body(avatar_id))
        for _ in range(SESSIONS):
            resource = mapping.build_session(
                request,
                name=to_resource_name(new_public_id("sess"), "sess"),
                namespace=name,
                tenant=tenant.name,
                max_duration_seconds=600,
            )
            custom.create_namespaced_custom_object(
                GROUP, VERSION, name, AVATAR_SESSION.plural, mapping.session_body(resource)
            )
        yield Namespace(name, api_client, tenant, avatar_id)
    finally:
        core.delete_namespace(name)


def _body(avatar_id: str) -> dict[str, Any]:
    return {
        "avatar_id": avatar_id,
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "support-42",
            "worker_token": "lk-worker-token-reads",
        },
    }


async def quiet(admin_client: client.ApiClient) -> None:
    """Wait until no namespace is being deleted: the namespace controller LISTs each kind in a
    namespace it empties, which would count as a LIST of sessions in a namespace. (Nothing
    else here LISTs sessions in a namespace: no operator runs, and the garbage collector
    lists across all namespaces.)"""
    core: Any = client.CoreV1Api(admin_client)

    def no_namespace_terminating() -> bool:
        return all(ns.status.phase != "Terminating" for ns in core.list_namespace().items)

    await wait_for_async(
        no_namespace_terminating, within=WAIT_SECONDS, description="namespaces to be deleted"
    )


def session_lists(admin_client: client.ApiClient) -> float:
    """LISTs of avatarsessions in a namespace the API server has served so far (any
    namespace: the metric does not say which; see `quiet`)."""
    # The admin client's connection pool carries its client certificate.
    pool: Any = admin_client.rest_client.pool_manager
    response = pool.request("GET", f"{admin_client.configuration.host}/metrics")
    assert response.status == 200
    text = response.data.decode()
    return sum(
        value
        for labels, value in samples(text, "apiserver_request_total")
        if labels.get("verb") == "LIST"
        and labels.get("resource") == "avatarsessions"
        and labels.get("scope") == "namespace"
    )


async def _reads(http: httpx.AsyncClient, ns: Namespace) -> None:
    """The three requests, each answered right from 200 sessions."""
    headers = ns.tenant.headers
    ids: list[str] = []
    cursor: str | None = None
    while True:
        params = {"limit": "100", **({"cursor": cursor} if cursor else {})}
        response = await http.get("/v1/sessions", params=params, headers=headers)
        assert response.status_code == 200, response.text
        page = response.json()
        ids += [session["id"] for session in page["data"]]
        cursor = page["next_cursor"]
        if not page["has_more"]:
            break
    assert len(ids) == SESSIONS
    assert ids == sorted(set(ids), reverse=True)  # newest first, none twice

    usage = await http.get("/v1/usage", headers=headers)
    assert usage.status_code == 200, usage.text
    assert usage.json()["concurrency"] == {"current": SESSIONS, "max": SESSIONS, "available": 0}

    refused = await http.post("/v1/sessions", json=_body(ns.avatar_id), headers=headers)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["code"] == "concurrency_limit_reached"


@asynccontextmanager
async def api(ns: Namespace, kube: Kube, indexes: Indexes) -> AsyncIterator[httpx.AsyncClient]:
    """One API instance with its own Kube client and indexes."""
    app = create_app(replace(SETTINGS, namespace=ns.name), kube, indexes=indexes)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
        yield http


async def test_with_the_index_in_sync_reads_and_refusals_list_nothing(
    populated: Namespace,
) -> None:
    kube = Kube(populated.admin_client.configuration, populated.name, timeout=30.0)
    indexes = Indexes.watching(kube)
    try:
        index = indexes.sessions
        index.start()

        def all_seen() -> bool:
            counts = index.counts(populated.tenant.name)
            return counts is not None and counts.active == SESSIONS

        await wait_for_async(all_seen, within=WAIT_SECONDS, description="the index to sync")
        await quiet(populated.admin_client)
        before = session_lists(populated.admin_client)
        async with api(populated, kube, indexes) as http:
            await _reads(http, populated)
        assert session_lists(populated.admin_client) - before == 0
    finally:
        await indexes.aclose()
        await kube.aclose()


async def test_out_of_sync_each_of_them_lists_instead(populated: Namespace) -> None:
    """An index that is not in sync is never trusted: each request LISTs. (This also shows
    that the count above would see a LIST.)"""
    kube = Kube(populated.admin_client.configuration, populated.name, timeout=30.0)
    indexes = Indexes.watching(kube)
    try:
        indexes.sessions.stop()  # never starts: stays out of sync
        await quiet(populated.admin_client)
        before = session_lists(populated.admin_client)
        async with api(populated, kube, indexes) as http:
            await _reads(http, populated)
        assert not indexes.sessions.synced
        # Two pages, usage, and the create's admission.
        assert session_lists(populated.admin_client) - before == 4
    finally:
        await indexes.aclose()
        await kube.aclose()
