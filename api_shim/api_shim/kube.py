"""Thin async adapter over the Kubernetes REST API, on aiohttp: no worker threads, and its C
HTTP parser keeps the cost of a call to a fraction of the official (blocking) client's, which
is what POST /v1/sessions mostly spends (bench/api_create.py). Credentials come from the
official client's loaders. Client errors become the API's own errors. Nothing here knows about
HTTP routes."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator
from typing import Any, TypeVar

import aiohttp
import structlog
from kubernetes import client, config
from pydantic import BaseModel, ValidationError

from api_shim.avatar_index import AvatarIndex
from api_shim.errors import internal_error, service_unavailable
from api_shim.informer import WatchExpiredError
from api_shim.sessions.index import SessionIndex
from api_shim.settings import Settings
from avatar_crds.avatar import Avatar
from avatar_crds.connection import bearer_token, tls_context
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Tenant

M = TypeVar("M", bound=BaseModel)

log = structlog.get_logger("api_shim.kube")

UNAVAILABLE_RETRY_AFTER_SECONDS = 5
FIELD_MANAGER = "facecast-api"
_MERGE_PATCH = "application/merge-patch+json"
# aiohttp reads lines of up to twice its read buffer. Each watch event is one line, and an
# object may be as large as etcd stores (1.5 MiB by default) and more in JSON: leave room.
WATCH_READ_BUFFER_BYTES = 4 * 1024 * 1024


class KubeConflictError(Exception):
    """The object changed (or already exists) since it was read: re-read and decide again."""


class KubeInvalidError(Exception):
    """The API server refused the object as invalid (CRD schema or CEL rule)."""


def configuration_from_settings(settings: Settings) -> client.Configuration:
    """From `settings.kubeconfig`, else the pod's service account, else ~/.kube/config."""
    configuration = client.Configuration()
    if settings.kubeconfig:
        config.load_kube_config(config_file=settings.kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    return configuration


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
        self._configuration = configuration
        self._timeout = timeout
        self._connections = connections
        self._ssl = tls_context(configuration)
        self._http: aiohttp.ClientSession | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None
        self._session_index: SessionIndex | None = None
        self._avatar_index: AvatarIndex | None = None
        self._custom_base = f"/apis/{GROUP}/{VERSION}/namespaces/{namespace}"
        self._secrets = f"/api/v1/namespaces/{namespace}/secrets"
        self._leases = f"/apis/coordination.k8s.io/v1/namespaces/{namespace}/leases"

    @classmethod
    def from_settings(cls, settings: Settings) -> Kube:
        return cls(
            configuration_from_settings(settings),
            settings.namespace,
            timeout=settings.kube_request_timeout_seconds,
            connections=settings.kube_connections,
        )

    async def aclose(self) -> None:
        """Close now, watches and connections included (from the event loop that served)."""
        for index in (self._session_index, self._avatar_index):
            if index is not None:
                await index.aclose()
        http = self._http
        if http is not None and self._http_loop is asyncio.get_running_loop():
            await http.close()
        self.close()

    def close(self) -> None:
        """Stop the indexes and forget the connections (they close when collected; aclose,
        from the serving loop, closes them at once)."""
        for index in (self._session_index, self._avatar_index):
            if index is not None:
                index.stop()
        self._http = self._http_loop = None

    @property
    def session_index(self) -> SessionIndex:
        """The watch-backed index of this namespace's sessions (started on first use, stopped
        by close)."""
        if self._session_index is None:
            self._session_index = SessionIndex(self)
        return self._session_index

    @property
    def avatar_index(self) -> AvatarIndex:
        """The watch-backed cache of this namespace's avatars (started on first use, stopped
        by close)."""
        if self._avatar_index is None:
            self._avatar_index = AvatarIndex(self)
        return self._avatar_index

    # --- sessions ------------------------------------------------------------------------------

    async def get_session(self, name: str) -> AvatarSession | None:
        raw = await self._get(AVATAR_SESSION.plural, name)
        return None if raw is None else AvatarSession.model_validate(raw)

    async def list_sessions(self, label_selector: str) -> list[AvatarSession]:
        return await self._list(AVATAR_SESSION.plural, label_selector, AvatarSession)

    async def create_session(self, body: dict[str, Any]) -> AvatarSession:
        raw = await self._create(AVATAR_SESSION.plural, body)
        session = AvatarSession.model_validate(raw)
        if self._session_index is not None:  # read-your-writes before the watch reports it
            self._session_index.created(session)
        return session

    async def patch_session(self, name: str, patch: dict[str, Any]) -> AvatarSession | None:
        """JSON merge patch of the main resource (spec, metadata); None if it is gone. A
        `metadata.resourceVersion` in the patch makes it conditional (KubeConflictError if
        stale)."""
        try:
            raw = await self._merge_patch(AVATAR_SESSION.plural, name, patch)
        except _NotFoundError:
            return None
        return AvatarSession.model_validate(raw)

    async def delete_session(self, name: str) -> None:
        """Background propagation: the owned Secret (and the worker pod) go with it. Gone
        already is fine."""
        await self._delete(AVATAR_SESSION.plural, name, {"propagationPolicy": "Background"})
        if self._session_index is not None:  # its slot is free for this process's next create
            self._session_index.deleted(name)

    async def create_token_secret(self, body: dict[str, Any]) -> None:
        # The reply echoes the token: it is read off the wire unparsed and dropped.
        await self._request("POST", self._secrets + _MANAGED, body=body, read=False)

    # --- idempotency claims (coordination.k8s.io Leases, see idempotency.py) ----------------

    async def create_lease(self, body: dict[str, Any]) -> dict[str, Any]:
        """KubeConflictError if a Lease of that name exists."""
        return await self._request("POST", self._leases + _MANAGED, body=body)

    async def get_lease(self, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", f"{self._leases}/{name}")
        except _NotFoundError:
            return None

    async def patch_lease(self, name: str, patch: dict[str, Any]) -> dict[str, Any] | None:
        """JSON merge patch; None if it is gone, KubeConflictError if a resourceVersion in
        `patch` is stale."""
        path = f"{self._leases}/{name}{_MANAGED}"
        try:
            return await self._request("PATCH", path, body=patch, content_type=_MERGE_PATCH)
        except _NotFoundError:
            return None

    async def delete_lease(self, name: str, *, uid: str, resource_version: str) -> None:
        """Only that very version of it: KubeConflictError if it changed; gone already is
        fine."""
        options = {
            "apiVersion": "v1",
            "kind": "DeleteOptions",
            "preconditions": {"uid": uid, "resourceVersion": resource_version},
        }
        try:
            await self._request("DELETE", f"{self._leases}/{name}", body=options)
        except _NotFoundError:
            return

    # --- tenants and avatars -------------------------------------------------------------------

    async def get_tenant(self, name: str) -> Tenant | None:
        raw = await self._get(TENANT.plural, name)
        return None if raw is None else Tenant.model_validate(raw)

    async def list_tenants(self) -> list[Tenant]:
        return await self._list(TENANT.plural, None, Tenant)

    async def create_tenant(self, tenant: Tenant) -> Tenant:
        body = tenant.to_k8s()
        body.pop("status", None)
        body["metadata"] = {"name": tenant.metadata.name, "labels": tenant.metadata.labels}
        return Tenant.model_validate(await self._create(TENANT.plural, body))

    async def replace_tenant_spec(self, tenant: Tenant) -> Tenant:
        """Conditional on the resourceVersion it was read at (KubeConflictError if it moved)."""
        patch = {
            "metadata": {"resourceVersion": tenant.metadata.resource_version},
            "spec": tenant.spec.to_k8s(),
        }
        raw = await self._merge_patch(TENANT.plural, tenant.metadata.name or "", patch)
        return Tenant.model_validate(raw)

    async def get_avatar(self, name: str) -> Avatar | None:
        raw = await self._get(AVATAR.plural, name)
        return None if raw is None else Avatar.model_validate(raw)

    async def find_avatar(self, name: str) -> Avatar | None:
        """From the avatar index when it has it, else from the API server (an avatar made a
        moment ago, or by another replica, may not be in the index yet). One deleted a moment
        ago may still be found: the operator then fails the session with `avatar_not_found`."""
        return self.avatar_index.get(name) or await self.get_avatar(name)

    async def list_avatars(self, label_selector: str | None = None) -> list[Avatar]:
        return await self._list(AVATAR.plural, label_selector, Avatar)

    async def create_avatar(self, body: dict[str, Any]) -> Avatar:
        return Avatar.model_validate(await self._create(AVATAR.plural, body))

    async def delete_avatar(self, name: str) -> None:
        """Gone already is fine."""
        await self._delete(AVATAR.plural, name)
        if self._avatar_index is not None:
            self._avatar_index.forget(name)

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
        params = {
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        if label_selector:
            params["labelSelector"] = label_selector
        # No total: the API server ends the watch after `seconds`; a read that waits longer
        # than that means the connection is dead.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self._timeout, sock_read=seconds + self._timeout
        )
        async with self._client().get(
            self._custom(plural),
            params=params,
            headers=self._headers(),
            timeout=timeout,
            read_bufsize=WATCH_READ_BUFFER_BYTES,
        ) as response:
            if response.status == 410:
                raise WatchExpiredError()
            if response.status >= 400:
                raise _translate(response.status, response.reason, await response.read())
            async for line in response.content:  # one JSON event per line
                event = _as_dict(json.loads(line))
                kind, raw = str(event.get("type")), _as_dict(event.get("object"))
                if kind == "ERROR":
                    if raw.get("code") == 410:
                        raise WatchExpiredError()
                    raise _translate(int(raw.get("code") or 500), raw.get("reason"), b"")
                yield kind, raw

    async def ping(self) -> None:
        """Cheap proof that the API server answers and we may read our resources."""
        await self._request("GET", self._custom(TENANT.plural), params={"limit": "1"})

    # --- plumbing ------------------------------------------------------------------------------

    def _custom(self, plural: str, name: str = "") -> str:
        path = f"{self._custom_base}/{plural}"
        return f"{path}/{name}" if name else path

    async def _get(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            return await self._request("GET", self._custom(plural, name))
        except _NotFoundError:
            return None

    async def _create(self, plural: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self._request("POST", self._custom(plural) + _MANAGED, body=body)

    async def _merge_patch(self, plural: str, name: str, patch: dict[str, Any]) -> dict[str, Any]:
        path = self._custom(plural, name) + _MANAGED
        return await self._request("PATCH", path, body=patch, content_type=_MERGE_PATCH)

    async def _delete(self, plural: str, name: str, params: dict[str, str] | None = None) -> None:
        try:
            await self._request("DELETE", self._custom(plural, name), params=params)
        except _NotFoundError:
            return

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

    def _client(self) -> aiohttp.ClientSession:
        """The connection pool of the running event loop (in the server there is one; tests
        run each in a loop of its own)."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http_loop = loop
            self._http = aiohttp.ClientSession(
                base_url=self._configuration.host,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self._timeout),
                raise_for_status=False,
            )
        return self._http

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json"}
        token = bearer_token(self._configuration)  # read each time: a rotated token works
        if token:
            headers["Authorization"] = token
        return headers

    async def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        content_type: str = "application/json",
        params: dict[str, str] | None = None,
        read: bool = True,
    ) -> dict[str, Any]:
        """The reply's JSON object ({} when `read` is False); errors translated. A 429 or 503
        with Retry-After (the API server's "storage is (re)initializing", or priority and
        fairness shedding load) was refused before anything was done, so it is retried, as
        client-go does, a few times within the request timeout."""
        headers = self._headers()
        data = None
        if body is not None:
            headers["Content-Type"] = content_type
            data = json.dumps(body)
        deadline = time.monotonic() + self._timeout
        retries = 0
        while True:
            try:
                async with self._client().request(
                    method, path, data=data, params=params, headers=headers
                ) as response:
                    if response.status < 400:
                        if not read:
                            await response.read()
                            return {}
                        return _as_dict(await response.json(content_type=None))
                    reply = await response.read()
                    wait = _retry_after(response.status, response.headers.get("Retry-After"))
            except (aiohttp.ClientError, OSError, TimeoutError) as error:
                log.warning("kubernetes_unreachable", error_type=type(error).__name__)
                raise service_unavailable(
                    "kubernetes_unavailable",
                    "The cluster is not answering. Retry later.",
                    retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
                ) from None
            if wait is None or retries >= MAX_RETRIES or time.monotonic() + wait > deadline:
                raise _translate(response.status, response.reason, reply)
            retries += 1
            await asyncio.sleep(wait)


MAX_RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 2.0


def _retry_after(status: int, header: str | None) -> float | None:
    """Seconds to wait before trying again, or None if this reply is final."""
    if status not in (429, 503) or header is None:
        return None
    try:
        return min(max(float(header), 0.0), MAX_RETRY_WAIT_SECONDS)
    except ValueError:
        return None


# In the path rather than as `params`: yarl's query encoding was a noticeable share of a call.
_MANAGED = f"?fieldManager={FIELD_MANAGER}"


class _NotFoundError(Exception):
    pass


def _translate(status: int, reason: str | None, body: bytes) -> Exception:
    """Only status and reason are logged: a response body may echo what was sent."""
    if status == 404:
        return _NotFoundError()
    if status == 409:
        return KubeConflictError(reason)
    if status == 422:
        return KubeInvalidError(_status_message(body, reason))
    if status == 429 or status >= 500:
        log.warning("kubernetes_busy", status=status, reason=reason)
        return service_unavailable(
            "kubernetes_unavailable",
            "The cluster is busy. Retry later.",
            retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
        )
    log.error("kubernetes_refused", status=status, reason=reason)
    return internal_error()


def _status_message(body: bytes, reason: str | None) -> str:
    """The `message` of a Kubernetes Status reply (for a CR, not a Secret: safe to read)."""
    try:
        status = json.loads(body or b"{}")
    except ValueError:
        return str(reason)
    return str(status.get("message", reason)) if isinstance(status, dict) else str(reason)


def _as_dict(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(raw).__name__}")
    return raw
