"""The API's calls to the Kubernetes API, typed, over the shared client layer (facecast_kube),
and the translation of what it raises into the API's errors. Nothing here knows about HTTP
routes, or about the indexes built on these calls (app.py wires them)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any, TypeVar

import structlog
from kubernetes import client
from pydantic import BaseModel, ValidationError

from api_shim.errors import internal_error, service_unavailable
from api_shim.informer import WatchExpiredError
from api_shim.settings import Settings
from avatar_crds.avatar import Avatar
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Tenant
from facecast_kube import (
    MERGE_PATCH,
    ConflictError,
    ExpiredError,
    InvalidError,
    KubeClient,
    KubeError,
    UnreachableError,
    absent_ok,
    load_configuration,
    paths,
)

M = TypeVar("M", bound=BaseModel)

log = structlog.get_logger("api_shim.kube")

UNAVAILABLE_RETRY_AFTER_SECONDS = 5
FIELD_MANAGER = "facecast-api"
# In the path rather than as `params`: yarl's query encoding was a noticeable share of a call.
_MANAGED = f"?fieldManager={FIELD_MANAGER}"


class KubeConflictError(Exception):
    """The object changed (or already exists) since it was read: re-read and decide again."""


class KubeInvalidError(Exception):
    """The API server refused the object as invalid (CRD schema or CEL rule)."""


def translate(error: KubeError | UnreachableError) -> Exception:
    """The API's error for what the client raised. Only status and reason are logged: a
    Status message may echo what was sent."""
    if isinstance(error, UnreachableError):
        log.warning("kubernetes_unreachable", error_type=type(error.__cause__).__name__)
        return service_unavailable(
            "kubernetes_unavailable",
            "The cluster is not answering. Retry later.",
            retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
        )
    if isinstance(error, ConflictError):
        return KubeConflictError(error.reason)
    if isinstance(error, InvalidError):
        return KubeInvalidError(error.message or error.reason)
    if error.status == 429 or error.status >= 500:
        log.warning("kubernetes_busy", status=error.status, reason=error.reason)
        return service_unavailable(
            "kubernetes_unavailable",
            "The cluster is busy. Retry later.",
            retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
        )
    log.error("kubernetes_refused", status=error.status, reason=error.reason)
    return internal_error()


class Kube:
    def __init__(
        self,
        configuration: client.Configuration,
        namespace: str,
        *,
        timeout: float,
        connections: int = Settings.kube_connections,
    ) -> None:
        self.namespace = namespace
        self._client = KubeClient(configuration, timeout=timeout, connections=connections)
        self._sessions = self._custom(AVATAR_SESSION.plural)
        self._tenants = self._custom(TENANT.plural)
        self._avatars = self._custom(AVATAR.plural)
        self._secrets = paths.SECRET.collection(namespace)
        self._leases = paths.LEASE.collection(namespace)

    @classmethod
    def from_settings(cls, settings: Settings) -> Kube:
        """Credentials by the one order (facecast_kube.config): `settings.kubeconfig`, else the
        pod's service account, else the default kubeconfig."""
        return cls(
            load_configuration(settings.kubeconfig or None),
            settings.namespace,
            timeout=settings.kube_request_timeout_seconds,
            connections=settings.kube_connections,
        )

    async def aclose(self) -> None:
        """Close the connections now (from the event loop that served)."""
        await self._client.close()

    def close(self) -> None:
        """Forget the connections (they close when collected; aclose, from the serving loop,
        closes them at once)."""
        self._client.release()

    # --- sessions ------------------------------------------------------------------------------

    async def get_session(self, name: str) -> AvatarSession | None:
        raw = await self._get(self._sessions, name)
        return None if raw is None else AvatarSession.model_validate(raw)

    async def list_sessions(self, label_selector: str) -> list[AvatarSession]:
        return await self._list(AVATAR_SESSION.plural, label_selector, AvatarSession)

    async def create_session(self, body: dict[str, Any]) -> AvatarSession:
        return AvatarSession.model_validate(await self._create(self._sessions, body))

    async def patch_session(self, name: str, patch: dict[str, Any]) -> AvatarSession | None:
        """JSON merge patch of the main resource (spec, metadata); None if it is gone. A
        `metadata.resourceVersion` in the patch makes it conditional (KubeConflictError if
        stale)."""
        raw = await self._merge_patch(self._sessions, name, patch)
        return None if raw is None else AvatarSession.model_validate(raw)

    async def delete_session(self, name: str) -> None:
        """Background propagation: the owned Secret (and the worker pod) go with it. Gone
        already is fine."""
        await self._delete(self._sessions, name, {"propagationPolicy": "Background"})

    async def create_token_secret(self, body: dict[str, Any]) -> None:
        # The reply echoes the token: it is read off the wire unparsed and dropped.
        await self._request("POST", self._secrets + _MANAGED, body=body, read=False)

    # --- idempotency claims (coordination.k8s.io Leases, see idempotency.py) ----------------

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        """KubeConflictError if a Lease of that name exists."""
        return await self._create(self._leases, body)

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        return await self._get(self._leases, name)

    async def patch_lease(self, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch; None if it is gone, KubeConflictError if a resourceVersion in
        `patch` is stale."""
        return await self._merge_patch(self._leases, name, patch)

    async def delete_lease(self, name: str, *, uid: str, resource_version: str) -> None:
        """Only that very version of it: KubeConflictError if it changed; gone already is
        fine."""
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid, "resourceVersion": resource_version},
        }
        await self._request_absent_ok("DELETE", f"{self._leases}/{name}", body=options)

    # --- tenants and avatars -------------------------------------------------------------------

    async def get_tenant(self, name: str) -> Tenant | None:
        raw = await self._get(self._tenants, name)
        return None if raw is None else Tenant.model_validate(raw)

    async def list_tenants(self) -> list[Tenant]:
        return await self._list(TENANT.plural, None, Tenant)

    async def create_tenant(self, tenant: Tenant) -> Tenant:
        body = tenant.to_k8s()
        body.pop("status", None)
        body["metadata"] = {"name": tenant.metadata.name, "labels": tenant.metadata.labels}
        return Tenant.model_validate(await self._create(self._tenants, body))

    async def replace_tenant_spec(self, tenant: Tenant) -> Tenant:
        """Conditional on the resourceVersion it was read at (KubeConflictError if it moved)."""
        patch = {
            "metadata": {"resourceVersion": tenant.metadata.resource_version},
            "spec": tenant.spec.to_k8s(),
        }
        name = tenant.metadata.name or ""
        raw = await self._request(
            "PATCH", f"{self._tenants}/{name}{_MANAGED}", body=patch, content_type=MERGE_PATCH
        )
        return Tenant.model_validate(raw)

    async def get_avatar(self, name: str) -> Avatar | None:
        raw = await self._get(self._avatars, name)
        return None if raw is None else Avatar.model_validate(raw)

    async def list_avatars(self, label_selector: str | None = None) -> list[Avatar]:
        return await self._list(AVATAR.plural, label_selector, Avatar)

    async def create_avatar(self, body: dict[str, Any]) -> Avatar:
        return Avatar.model_validate(await self._create(self._avatars, body))

    async def delete_avatar(self, name: str) -> None:
        """Gone already is fine."""
        await self._delete(self._avatars, name)

    # --- for the informers (informer.WatchSource) ----------------------------------------------

    async def list_objects(
        self, plural: str, label_selector: str | None
    ) -> tuple[list[dict[str, Any]], str]:
        params = {"labelSelector": label_selector} if label_selector else None
        raw = await self._request("GET", self._custom(plural), params=params)
        items = raw.get("items") or []
        return list(items), str(raw.get("metadata", {}).get("resourceVersion", ""))

    async def watch_objects(
        self, plural: str, label_selector: str | None, version: str, *, seconds: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        params = {"labelSelector": label_selector} if label_selector else None
        try:
            async with self._client.watch(
                self._custom(plural), version=version, seconds=seconds, params=params
            ) as events:
                async for event in events:
                    yield event
        except ExpiredError:
            raise WatchExpiredError() from None
        except (KubeError, UnreachableError) as error:
            raise translate(error) from None

    async def ping(self) -> None:
        """Cheap proof that the API server answers and we may read our resources."""
        await self._request("GET", self._tenants, params={"limit": "1"})

    # --- plumbing ------------------------------------------------------------------------------

    def _custom(self, plural: str) -> str:
        return paths.custom(GROUP, VERSION, plural).collection(self.namespace)

    async def _get(self, collection: str, name: str) -> dict[str, Any] | None:
        return await self._request_absent_ok("GET", f"{collection}/{name}")

    async def _create(self, collection: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", collection + _MANAGED, body=body)

    async def _merge_patch(
        self, collection: str, name: str, patch: dict[str, Any]
    ) -> dict[str, Any] | None:
        path = f"{collection}/{name}{_MANAGED}"
        return await self._request_absent_ok("PATCH", path, body=patch, content_type=MERGE_PATCH)

    async def _delete(
        self, collection: str, name: str, params: dict[str, str] | None = None
    ) -> None:
        await self._request_absent_ok("DELETE", f"{collection}/{name}", params=params)

    async def _list(self, plural: str, label_selector: str | None, model: type[M]) -> list[M]:
        raw_items, _ = await self.list_objects(plural, label_selector)
        items: list[M] = []
        for item in raw_items:
            try:
                items.append(model.model_validate(item))
            except ValidationError as error:
                # One object someone hand-edited into a bad shape must not break every listing.
                name = item.get("metadata", {}).get("name")
                log.warning("skipping_invalid_object", plural=plural, name=name, error=str(error))
        return items

    async def _request(self, method: str, path: str, **options: Any) -> dict[str, Any]:
        """The reply; what the client raises, as the API's errors."""
        try:
            return await self._client.request(method, path, **options)
        except (KubeError, UnreachableError) as error:
            raise translate(error) from None

    async def _request_absent_ok(
        self, method: str, path: str, **options: Any
    ) -> dict[str, Any] | None:
        """The reply, or None if the object is not there."""
        try:
            return await absent_ok(self._client.request(method, path, **options))
        except (KubeError, UnreachableError) as error:
            raise translate(error) from None
