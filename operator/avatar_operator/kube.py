"""A small asynchronous Kubernetes REST client: only the calls the operator makes, as dicts.

Credentials come from the kubeconfig or the in-cluster service account, read by the official
client's loaders; requests go through httpx so the kopf event loop never blocks on a thread.
Absent and already-existing objects are normal outcomes here, not errors.
"""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Generator
from typing import Any

import httpx
from kubernetes import client, config

from avatar_crds.connection import bearer_token, tls_context
from avatar_crds.kinds import AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION

FINALIZER = "facecast.io/session"
_JSON_PATCH = {"Content-Type": "application/json-patch+json"}
_MERGE_PATCH = {"Content-Type": "application/merge-patch+json"}
_PATHS = {
    "Pod": "/api/v1/namespaces/{ns}/pods",
    "ServiceAccount": "/api/v1/namespaces/{ns}/serviceaccounts",
    "Role": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/roles",
    "RoleBinding": "/apis/rbac.authorization.k8s.io/v1/namespaces/{ns}/rolebindings",
    "AvatarSession": f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{AVATAR_SESSION.plural}",
    "Tenant": f"/apis/{GROUP}/{VERSION}/namespaces/{{ns}}/{TENANT.plural}",
    "Secret": "/api/v1/namespaces/{ns}/secrets",
}


class KubeError(RuntimeError):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(f"{status}: {message}")
        self.status = status


class _TokenAuth(httpx.Auth):
    """Asks the official configuration for the token on every request, so rotated
    service-account tokens are picked up."""

    def __init__(self, cfg: client.Configuration) -> None:
        self.cfg = cfg

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        token = bearer_token(self.cfg)
        if token:
            request.headers["Authorization"] = token
        yield request


def load_configuration(kubeconfig: str | None = None) -> client.Configuration:
    cfg = client.Configuration()
    try:
        config.load_kube_config(config_file=kubeconfig, client_configuration=cfg)
    except config.ConfigException:
        config.load_incluster_config(client_configuration=cfg)
    return cfg


MAX_IN_FLIGHT = 24


class Kube:
    def __init__(self, http: httpx.AsyncClient) -> None:
        self.http = http
        # httpcore scans every waiting request each time a connection frees up; with hundreds
        # queued that scan dominated the operator's CPU. Queue here instead, cheaply.
        self.in_flight = asyncio.Semaphore(MAX_IN_FLIGHT)

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        cfg = load_configuration(kubeconfig)
        http = httpx.AsyncClient(
            base_url=cfg.host,
            verify=tls_context(cfg),
            auth=_TokenAuth(cfg),
            timeout=httpx.Timeout(30.0),
            limits=httpx.Limits(max_connections=32, max_keepalive_connections=16),
        )
        return cls(http)

    async def close(self) -> None:
        await self.http.aclose()

    # --- generic -------------------------------------------------------------------------

    async def request(
        self, method: str, path: str, *, absent_ok: bool = False, exists_ok: bool = False,
        **kwargs: Any,
    ) -> dict[str, Any] | None:  # fmt: skip
        async with self.in_flight:
            response = await self.http.request(method, path, **kwargs)
        if response.status_code == 404 and absent_ok:
            return None
        if response.status_code == 409 and exists_ok:
            return None
        if response.status_code >= 400:
            raise KubeError(response.status_code, _message(response))
        body: dict[str, Any] = response.json()
        return body

    def path(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        base = _PATHS[kind].format(ns=namespace)
        return "/".join(part for part in (base, name, sub) if part)

    # --- what the operator does ----------------------------------------------------------

    async def create(self, obj: dict[str, Any]) -> None:
        """Create an object built by `resources`; an existing one is kept as is."""
        path = self.path(obj["kind"], obj["metadata"]["namespace"])
        await self.request("POST", path, json=obj, exists_ok=True)

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await self.request("GET", self.path(kind, namespace, name), absent_ok=True)

    async def delete(self, kind: str, namespace: str, name: str, *, force: bool = False) -> None:
        params = {"gracePeriodSeconds": "0"} if force else None
        path = self.path(kind, namespace, name)
        await self.request("DELETE", path, params=params, absent_ok=True)

    async def node_exists(self, name: str) -> bool:
        return await self.request("GET", f"/api/v1/nodes/{name}", absent_ok=True) is not None

    async def read_secret_value(self, namespace: str, name: str, key: str) -> str | None:
        """Secrets are only ever read by name: the operator may not list or watch them."""
        secret = await self.read("Secret", namespace, name)
        data = (secret or {}).get("data") or {}
        return base64.b64decode(data[key]).decode() if key in data else None

    async def patch_status(
        self, kind: str, namespace: str, name: str, patch: Any
    ) -> dict[str, Any] | None:
        """Merge-patch the status; put metadata.resourceVersion in `patch` to make it
        conditional (409 if the object changed since it was read). Returns the new object."""
        path = self.path(kind, namespace, name, "status")
        return await self.request("PATCH", path, json=patch, headers=_MERGE_PATCH, absent_ok=True)

    async def add_finalizer(
        self, namespace: str, name: str, present: list[str]
    ) -> dict[str, Any] | None:
        op = (
            {"op": "add", "path": "/metadata/finalizers/-", "value": FINALIZER}
            if present
            else {"op": "add", "path": "/metadata/finalizers", "value": [FINALIZER]}
        )
        return await self._json_patch(namespace, name, [op])

    async def remove_finalizer(self, namespace: str, name: str, present: list[str]) -> None:
        if FINALIZER not in present:
            return
        at = f"/metadata/finalizers/{present.index(FINALIZER)}"
        ops = [{"op": "test", "path": at, "value": FINALIZER}, {"op": "remove", "path": at}]
        await self._json_patch(namespace, name, ops)

    async def replace_status(self, kind: str, body: dict[str, Any]) -> None:
        """PUT with the read resourceVersion: a concurrent writer makes this fail with 409."""
        meta = body["metadata"]
        path = self.path(kind, meta["namespace"], meta["name"], "status")
        await self.request("PUT", path, json=body)

    async def _json_patch(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        path = self.path("AvatarSession", namespace, name)
        return await self.request("PATCH", path, json=ops, headers=_JSON_PATCH, absent_ok=True)


def _message(response: httpx.Response) -> str:
    try:
        return str(response.json().get("message", response.text))
    except ValueError:
        return response.text[:500]
