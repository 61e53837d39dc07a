"""The operator's calls to the Kubernetes API, as dicts, over the shared client layer
(facecast_kube): credentials by its one order, errors by status. Absent and already-existing
objects are normal outcomes here, not errors. kopf's own watches do not come through here."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator, Mapping
from contextlib import AbstractAsyncContextManager
from typing import Any

from avatar_crds.kinds import AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION
from facecast_kube import (
    JSON_PATCH,
    MERGE_PATCH,
    KubeClient,
    KubeError,
    UnreachableError,
    WatchEvent,
    absent_ok,
    exists_ok,
    paths,
)

__all__ = ["FINALIZER", "IN_FLIGHT", "Kube", "KubeError", "UnreachableError"]

FINALIZER = "facecast.io/session"
REQUEST_TIMEOUT_SECONDS = 30.0
CONNECTIONS = 32
IN_FLIGHT = 8 * CONNECTIONS
"""The most work items one work queue runs at once (session reconciliations, grant writes):
few enough that their requests get a connection well within REQUEST_TIMEOUT_SECONDS, where
10,000 at once timed out waiting for one, and were tried all over again."""
_RESOURCES = {
    "Pod": paths.POD,
    "ServiceAccount": paths.SERVICE_ACCOUNT,
    "Role": paths.ROLE,
    "RoleBinding": paths.ROLE_BINDING,
    "Secret": paths.SECRET,
    "AvatarSession": paths.custom(GROUP, VERSION, AVATAR_SESSION.plural),
    "Tenant": paths.custom(GROUP, VERSION, TENANT.plural),
}


class Kube:
    def __init__(self, client: KubeClient) -> None:
        self.client = client

    @classmethod
    def connect(cls, kubeconfig: str | None = None) -> Kube:
        return cls(
            KubeClient.connect(kubeconfig, timeout=REQUEST_TIMEOUT_SECONDS, connections=CONNECTIONS)
        )

    async def close(self) -> None:
        await self.client.close()

    # --- generic -------------------------------------------------------------------------

    async def request(
        self,
        method: str,
        path: str,
        *,
        json: Any = None,
        params: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        return await self.client.request(method, path, body=json, params=params, headers=headers)

    def watch(
        self, path: str, *, version: str, seconds: int, params: Mapping[str, str] | None = None
    ) -> AbstractAsyncContextManager[AsyncIterator[WatchEvent]]:
        return self.client.watch(path, version=version, seconds=seconds, params=params)

    def path(self, kind: str, namespace: str, name: str = "", sub: str = "") -> str:
        return _RESOURCES[kind].item(namespace, name, sub)

    # --- what the operator does ----------------------------------------------------------

    async def create(self, obj: dict[str, Any]) -> None:
        """Create an object built by `resources`; an existing one is kept as is."""
        path = self.path(obj["kind"], obj["metadata"]["namespace"])
        await exists_ok(self.client.request("POST", path, body=obj))

    async def read(self, kind: str, namespace: str, name: str) -> dict[str, Any] | None:
        return await absent_ok(self.client.request("GET", self.path(kind, namespace, name)))

    async def delete(self, kind: str, namespace: str, name: str, *, force: bool = False) -> None:
        params = {"gracePeriodSeconds": "0"} if force else None
        path = self.path(kind, namespace, name)
        await absent_ok(self.client.request("DELETE", path, params=params))

    async def node_exists(self, name: str) -> bool:
        node = await absent_ok(self.client.request("GET", paths.NODE.item("", name)))
        return node is not None

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
        call = self.client.request("PATCH", path, body=patch, content_type=MERGE_PATCH)
        return await absent_ok(call)

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
        await self.client.request("PUT", path, body=body)

    async def _json_patch(
        self, namespace: str, name: str, ops: list[dict[str, Any]]
    ) -> dict[str, Any] | None:
        path = self.path("AvatarSession", namespace, name)
        call = self.client.request("PATCH", path, body=ops, content_type=JSON_PATCH)
        return await absent_ok(call)
