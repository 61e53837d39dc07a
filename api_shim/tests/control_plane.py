"""The harness of the API's tests against the real kube-apiserver (plus controller-manager for
garbage collection), as fixtures (conftest.py registers them) and helpers the test modules
import. No operator runs here, so sessions stay `created` unless a test writes their status
the way the operator would, through the status subresource.

One namespace for each test module; each test makes its own tenants, so counts never mix.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from api_shim import idempotency
from api_shim.app import create_app
from api_shim.deps import Indexes
from api_shim.kube import Kube
from api_shim.sessions.service import utc_now
from api_shim.settings import Settings
from avatar_crds import contract
from avatar_crds.ids import new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION
from testbed.objects import avatar_manifest
from testbed.tenants import TenantKey, new_tenant

RequestFactory = Callable[..., dict[str, Any]]
T = TypeVar("T")

WAIT_TIMEOUT = 60.0  # generous: the garbage collector on a busy 2-core machine
# No operator runs here to queue a session, so a create does not wait for it to (a test that
# writes the phase, or runs the operator, sets its own create_queue_wait_seconds).
BASE_SETTINGS = Settings(
    auth_cache_ttl_seconds=0.0, auth_miss_reload_seconds=0.0, create_queue_wait_seconds=0.0
)


async def eventually(check: Callable[[], T | None], *, within: float, what: str) -> T:
    """Poll `check` until it returns something truthy, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


def error_of(response: httpx.Response, status: int, type_: str, code: str) -> dict[str, Any]:
    """Assert the envelope (exactly its five fields, request id = header) and return it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "code", "message", "param", "request_id"}
    assert (error["type"], error["code"]) == (type_, code), error
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    kube: Kube
    admin_client: client.ApiClient
    namespace: str
    indexes: Indexes = field(init=False)

    def __post_init__(self) -> None:
        self.indexes = Indexes.watching(self.kube)  # shared by the apps `api` makes on `kube`

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin_client)

    @property
    def core(self) -> Any:  # Any: called with plain manifests, not V1 model objects
        return client.CoreV1Api(self.admin_client)

    @property
    def rbac(self) -> Any:
        return client.RbacAuthorizationV1Api(self.admin_client)

    async def tenant(
        self,
        *,
        max_concurrent: int = 10,
        minutes: int = 60,
        max_duration: int = 600,
        qualities: tuple[str, ...] = ("mock", "lite"),
        rpm: int = 600,
    ) -> TenantKey:
        return await new_tenant(
            self.kube,
            max_concurrent=max_concurrent,
            minutes=minutes,
            max_duration=max_duration,
            qualities=qualities,
            requests_per_minute=rpm,
        )

    def avatar(self, owner: TenantKey, visibility: str = "tenant") -> str:
        public_id = new_public_id("av")
        body = avatar_manifest(public_id, owner.name, visibility=visibility)
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, body
        )
        return public_id

    def session_object(self, session_id: str) -> dict[str, Any] | None:
        try:
            raw = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                AVATAR_SESSION.plural,
                to_resource_name(session_id, "sess"),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        assert isinstance(raw, dict)
        return raw

    def sessions_of(self, tenant: TenantKey) -> list[dict[str, Any]]:
        raw = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            label_selector=f"{contract.LABEL_TENANT}={tenant.name}",
        )
        assert isinstance(raw, dict)
        items: list[dict[str, Any]] = raw["items"]
        return items

    def token_secret(self, session_id: str) -> Any:
        name = contract.token_secret_name(to_resource_name(session_id, "sess"))
        try:
            return self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def set_session_status(self, session_id: str, status: dict[str, Any]) -> None:
        """What the operator does: write status through the status subresource."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            to_resource_name(session_id, "sess"),
            {"status": status},
        )

    def set_seconds_used(self, tenant: TenantKey, seconds: float) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            TENANT.plural,
            tenant.name,
            {"status": {"usage": {"secondsUsed": seconds}}},
        )

    @asynccontextmanager
    async def api(
        self,
        settings: Settings = BASE_SETTINGS,
        kube: Kube | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A fresh app instance (fresh caches and buckets) on this namespace."""
        app = create_app(
            replace(settings, namespace=self.namespace),
            kube or self.kube,
            now=now,
            indexes=self.indexes if kube is None else None,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


@pytest.fixture(scope="module")
def cluster_namespace(api_client: client.ApiClient, crds: None) -> Iterator[str]:
    core: Any = client.CoreV1Api(api_client)
    name = f"api-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)  # the namespace controller finishes in the background


@pytest.fixture(scope="module")
def cluster(
    control_plane: Any, api_client: client.ApiClient, cluster_namespace: str
) -> Iterator[Cluster]:
    kube = Kube(api_client.configuration, cluster_namespace, timeout=10.0)
    made = Cluster(kube=kube, admin_client=api_client, namespace=cluster_namespace)
    yield made
    made.indexes.stop()
    kube.close()


async def _create(
    http: httpx.AsyncClient,
    tenant: TenantKey,
    body: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    headers = dict(tenant.headers)
    if key is not None:
        headers[idempotency.HEADER] = key
    return await http.post("/v1/sessions", json=body, headers=headers)


async def _created(
    http: httpx.AsyncClient, tenant: TenantKey, body: dict[str, Any]
) -> dict[str, Any]:
    response = await _create(http, tenant, body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def _index_sees(cluster: Cluster, tenant: TenantKey, session_id: str, phase: str) -> None:
    """Wait until the session index of `cluster.kube` has seen the session in `phase`."""
    name = to_resource_name(session_id, "sess")

    def seen() -> bool:
        sessions = cluster.indexes.sessions.sessions(tenant.name) or []
        return any(s.metadata.name == name and s.status.phase == phase for s in sessions)

    await eventually(seen, within=WAIT_TIMEOUT, what=f"the index to see {session_id} {phase}")
