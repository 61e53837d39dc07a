"""Idempotency-Key across API replicas, against the real kube-apiserver: two API instances, each
with its own Kube client, session index and in-process key locks (as two pods have), share
only the API server, which must make them agree on one session per key."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import AsyncExitStack, asynccontextmanager
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from api_shim import idempotency
from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.sessions.schemas import CreateSessionRequest
from api_shim.sessions.service import utc_now
from api_shim.tests.control_plane import BASE_SETTINGS
from avatar_crds import contract
from avatar_crds.ids import new_public_id, to_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from testbed.objects import avatar_manifest
from testbed.tenants import TenantKey, new_tenant
from testbed.wait import wait_for_async

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

REPLICAS = 2
REQUESTS = 12  # split between the replicas, all at once
SETTINGS = BASE_SETTINGS
Clock = Callable[[], datetime]


@dataclass
class Cluster:
    namespace: str
    admin_client: client.ApiClient

    @property
    def custom(self) -> Any:
        return client.CustomObjectsApi(self.admin_client)

    @property
    def leases(self) -> Any:
        return client.CoordinationV1Api(self.admin_client)

    async def tenant_with_avatar(self, **plan: Any) -> tuple[TenantKey, str]:
        kube = Kube(self.admin_client.configuration, self.namespace, timeout=30.0)
        try:
            tenant = await new_tenant(kube, **plan)
        finally:
            await kube.aclose()
        avatar_id = new_public_id("av")
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, avatar_manifest(avatar_id, tenant.name)
        )
        return tenant, avatar_id

    def sessions_of(self, tenant: TenantKey) -> list[dict[str, Any]]:
        raw = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            label_selector=f"{contract.LABEL_TENANT}={tenant.name}",
        )
        items: list[dict[str, Any]] = raw["items"]
        return items

    def claim(self, tenant: TenantKey, key: str) -> Any:
        name = idempotency.claim_name(idempotency.key_hash(tenant.name, key))
        try:
            return self.leases.read_namespaced_lease(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    @asynccontextmanager
    async def replicas(
        self, count: int = REPLICAS, kubes: list[Kube] | None = None, now: Clock = utc_now
    ) -> AsyncIterator[list[httpx.AsyncClient]]:
        """`count` API instances sharing nothing but the API server (on `kubes` if given)."""
        async with AsyncExitStack() as stack:
            clients = []
            for i in range(count):
                if kubes is None:
                    kube = Kube(self.admin_client.configuration, self.namespace, timeout=30.0)
                    stack.push_async_callback(kube.aclose)
                else:
                    kube = kubes[i]
                app = create_app(replace(SETTINGS, namespace=self.namespace), kube, now=now)
                http = httpx.AsyncClient(
                    transport=httpx.ASGITransport(app=app), base_url="http://x"
                )
                clients.append(await stack.enter_async_context(http))
            yield clients


@pytest.fixture(scope="module")
def cluster(control_plane: Any, api_client: client.ApiClient, crds: None) -> Iterator[Cluster]:
    core: Any = client.CoreV1Api(api_client)
    namespace = f"idem-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    yield Cluster(namespace, api_client)
    core.delete_namespace(namespace)


def _body(avatar_id: str, quality: str = "lite") -> dict[str, Any]:
    return {
        "avatar_id": avatar_id,
        "quality": quality,
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "support-42",
            "worker_token": "lk-worker-token-replicas",
        },
    }


async def _create(
    http: httpx.AsyncClient, tenant: TenantKey, body: dict[str, Any], key: str
) -> httpx.Response:
    headers = {**tenant.headers, idempotency.HEADER: key}
    return await http.post("/v1/sessions", json=body, headers=headers)


async def test_concurrent_requests_with_one_key_on_two_replicas_make_one_session(
    cluster: Cluster,
) -> None:
    tenant, avatar_id = await cluster.tenant_with_avatar()
    body = _body(avatar_id)
    async with cluster.replicas() as apis:
        responses = await asyncio.gather(
            *(_create(apis[i % REPLICAS], tenant, body, "order-1") for i in range(REQUESTS))
        )
        # And later, on each replica: the same answer.
        later = [await _create(api, tenant, body, "order-1") for api in apis]
    assert [r.status_code for r in responses + later] == [201] * (REQUESTS + REPLICAS), [
        r.text for r in responses + later if r.status_code != 201
    ]
    ids = {response.json()["id"] for response in responses + later}
    assert len(ids) == 1
    made = [r for r in responses if "idempotent-replayed" not in r.headers]
    assert len(made) == 1  # the others are replays
    sessions = cluster.sessions_of(tenant)
    assert [to_public_id(s["metadata"]["name"]) for s in sessions] == list(ids)
    key_hash = idempotency.key_hash(tenant.name, "order-1")
    assert sessions[0]["metadata"]["labels"][idempotency.LABEL_KEY_HASH] == key_hash
    # The claim names that session and is owned by it (so it goes with it).
    claim = cluster.claim(tenant, "order-1")
    assert claim.spec.holder_identity == sessions[0]["metadata"]["name"]
    [owner] = claim.metadata.owner_references
    assert (owner.kind, owner.uid) == ("AvatarSession", sessions[0]["metadata"]["uid"])


async def test_one_key_with_different_bodies_on_two_replicas_is_one_session_and_409s(
    cluster: Cluster,
) -> None:
    tenant, avatar_id = await cluster.tenant_with_avatar()
    bodies = [_body(avatar_id, "lite"), _body(avatar_id, "mock")]
    async with cluster.replicas() as apis:
        responses = await asyncio.gather(
            *(
                _create(apis[i % REPLICAS], tenant, bodies[(i // REPLICAS) % 2], "order-2")
                for i in range(REQUESTS)
            )
        )
    [session] = cluster.sessions_of(tenant)
    winner = to_public_id(session["metadata"]["name"])
    for response in responses:
        if response.status_code == 201:
            assert response.json()["id"] == winner
            assert response.json()["quality"] == session["spec"]["quality"]
        else:
            assert response.status_code == 409, response.text
            assert response.json()["error"]["code"] == "idempotency_key_reused"
    assert sum(r.status_code == 409 for r in responses) == REQUESTS // 2


async def test_a_claim_left_by_a_replica_that_died_is_taken_over_after_its_lease(
    cluster: Cluster,
) -> None:
    """A replica claimed the key, then died before making its session."""
    tenant, avatar_id = await cluster.tenant_with_avatar()
    body = _body(avatar_id)
    key_hash = idempotency.key_hash(tenant.name, "order-3")
    stale = idempotency.claim_body(
        tenant=tenant.name,
        key_hash=key_hash,
        session_name=to_resource_name(new_public_id("sess"), "sess"),
        fingerprint=idempotency.fingerprint(CreateSessionRequest.model_validate(body)),
        namespace=cluster.namespace,
        now=utc_now() - timedelta(seconds=idempotency.CLAIM_SECONDS + 1),
    )
    cluster.leases.create_namespaced_lease(cluster.namespace, stale)
    async with cluster.replicas(1) as [api]:
        response = await _create(api, tenant, body, "order-3")
    assert response.status_code == 201, response.text
    assert "idempotent-replayed" not in response.headers
    [session] = cluster.sessions_of(tenant)
    assert to_public_id(session["metadata"]["name"]) == response.json()["id"]
    claim = cluster.claim(tenant, "order-3")
    assert claim.spec.holder_identity == session["metadata"]["name"]
    assert claim.metadata.owner_references[0].uid == session["metadata"]["uid"]


async def test_once_its_session_is_deleted_a_key_makes_a_new_one(cluster: Cluster) -> None:
    tenant, avatar_id = await cluster.tenant_with_avatar()
    body = _body(avatar_id)
    async with cluster.replicas() as [first, second]:
        made = await _create(first, tenant, body, "order-4")
        assert made.status_code == 201, made.text
        deleted = await first.delete(f"/v1/sessions/{made.json()['id']}", headers=tenant.headers)
        assert deleted.status_code == 200
        again = await _create(second, tenant, body, "order-4")
    assert again.status_code == 201, again.text
    assert "idempotent-replayed" not in again.headers
    assert again.json()["id"] != made.json()["id"]
    [session] = cluster.sessions_of(tenant)
    assert to_public_id(session["metadata"]["name"]) == again.json()["id"]


async def test_a_refusal_on_one_replica_frees_the_key_for_the_other(cluster: Cluster) -> None:
    tenant, avatar_id = await cluster.tenant_with_avatar(max_concurrent=1)
    body = _body(avatar_id)
    async with cluster.replicas() as [first, second]:
        taken = await first.post("/v1/sessions", json=body, headers=tenant.headers)
        assert taken.status_code == 201, taken.text
        refused = await _create(first, tenant, body, "order-5")
        assert refused.status_code == 429, refused.text
        assert cluster.claim(tenant, "order-5") is None
        freed = await second.delete(f"/v1/sessions/{taken.json()['id']}", headers=tenant.headers)
        assert freed.status_code == 200
        await wait_for_async(
            lambda: len(cluster.sessions_of(tenant)) == 0,
            within=60.0,
            description="the session to go",
        )
        retried = await _create(second, tenant, body, "order-5")
    assert retried.status_code == 201, retried.text


async def test_a_slow_replica_whose_claim_was_taken_over_undoes_its_session(
    cluster: Cluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Replica A claims the key and stalls mid-create past its lease; replica B (whose clock
    says the lease ran out) takes the claim over and makes its session. A's commit then fails
    on the claim's resourceVersion: A deletes its own session and answers with B's."""
    tenant, avatar_id = await cluster.tenant_with_avatar()
    body = _body(avatar_id)
    slow = Kube(cluster.admin_client.configuration, cluster.namespace, timeout=30.0)
    stalled, resume = asyncio.Event(), asyncio.Event()
    create_secret = slow.create_token_secret

    async def stalling(secret: dict[str, Any]) -> None:
        stalled.set()
        await resume.wait()
        await create_secret(secret)

    monkeypatch.setattr(slow, "create_token_secret", stalling)
    try:
        async with (
            cluster.replicas(1, kubes=[slow]) as [a],
            cluster.replicas(
                1, now=lambda: utc_now() + timedelta(seconds=idempotency.CLAIM_SECONDS + 1)
            ) as [b],
        ):
            first = asyncio.create_task(_create(a, tenant, body, "order-6"))
            await asyncio.wait_for(stalled.wait(), timeout=60.0)
            [made_by_a] = cluster.sessions_of(tenant)
            taken_over = await _create(b, tenant, body, "order-6")
            assert taken_over.status_code == 201, taken_over.text
            assert "idempotent-replayed" not in taken_over.headers
            resume.set()
            answer = await first
    finally:
        await slow.aclose()
    assert answer.status_code == 201, answer.text
    assert answer.json()["id"] == taken_over.json()["id"]
    assert answer.headers["idempotent-replayed"] == "true"
    remaining = [s["metadata"]["name"] for s in cluster.sessions_of(tenant)]
    assert [to_public_id(name) for name in remaining] == [taken_over.json()["id"]]
    assert made_by_a["metadata"]["name"] not in remaining
