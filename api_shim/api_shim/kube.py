"""Thin async adapter over the (blocking) kubernetes client: each call runs on a bounded thread
pool, and client errors become the API's own errors. Nothing here knows about HTTP routes."""

from __future__ import annotations

import asyncio
import functools
import json
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any, TypeVar

import structlog
import urllib3
from kubernetes import client, config
from kubernetes.client.exceptions import ApiException
from pydantic import BaseModel, ValidationError

from api_shim.errors import internal_error, service_unavailable
from api_shim.session_index import SessionIndex
from api_shim.settings import Settings
from avatar_crds import contract
from avatar_crds.avatar import Avatar
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Tenant

T = TypeVar("T")
M = TypeVar("M", bound=BaseModel)

log = structlog.get_logger("api_shim.kube")

UNAVAILABLE_RETRY_AFTER_SECONDS = 5
FIELD_MANAGER = "facecast-api"


class KubeConflictError(Exception):
    """The object changed (or already exists) since it was read: re-read and decide again."""


class KubeInvalidError(Exception):
    """The API server refused the object as invalid (CRD schema or CEL rule)."""


def api_client_from_settings(settings: Settings) -> client.ApiClient:
    """From `settings.kubeconfig`, else the pod's service account, else ~/.kube/config."""
    configuration = client.Configuration()
    if settings.kubeconfig:
        config.load_kube_config(config_file=settings.kubeconfig, client_configuration=configuration)
    else:
        try:
            config.load_incluster_config(client_configuration=configuration)
        except config.ConfigException:
            config.load_kube_config(client_configuration=configuration)
    # One connection per worker thread, so concurrent calls never queue for a socket.
    configuration.connection_pool_maxsize = settings.kube_threads
    return client.ApiClient(configuration=configuration)


class Kube:
    def __init__(
        self, api_client: client.ApiClient, namespace: str, *, threads: int, timeout: float
    ) -> None:
        self.namespace = namespace
        self._api_client = api_client
        self._custom = client.CustomObjectsApi(api_client)
        # Any: its methods are typed for V1 model objects, and we pass plain manifests.
        self._core: Any = client.CoreV1Api(api_client)
        self._timeout = timeout
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="kube")
        self._session_index: SessionIndex | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> Kube:
        return cls(
            api_client_from_settings(settings),
            settings.namespace,
            threads=settings.kube_threads,
            timeout=settings.kube_request_timeout_seconds,
        )

    def close(self) -> None:
        if self._session_index is not None:
            self._session_index.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self._api_client.close()

    @property
    def session_index(self) -> SessionIndex:
        """The watch-backed index of this namespace's sessions (started on first use, stopped
        by close). Its watch has a connection of its own, beside the worker threads' pool."""
        if self._session_index is None:
            own_client = client.ApiClient(configuration=self._api_client.configuration)
            self._session_index = SessionIndex(
                own_client, self.namespace, request_timeout=self._timeout
            )
        return self._session_index

    # --- sessions ------------------------------------------------------------------------------

    async def get_session(self, name: str) -> AvatarSession | None:
        raw = await self._get_custom(AVATAR_SESSION.plural, name)
        return None if raw is None else AvatarSession.model_validate(raw)

    async def list_sessions(self, label_selector: str) -> list[AvatarSession]:
        return await self._list_custom(AVATAR_SESSION.plural, label_selector, AvatarSession)

    async def create_session(self, body: dict[str, Any]) -> AvatarSession:
        raw = await self._run(
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            body,
            field_manager=FIELD_MANAGER,
        )
        return AvatarSession.model_validate(raw)

    async def patch_session(self, name: str, patch: dict[str, Any]) -> AvatarSession | None:
        """JSON merge patch of the main resource (spec, metadata); None if it is gone. A
        `metadata.resourceVersion` in the patch makes it conditional (KubeConflictError if
        stale)."""
        try:
            raw = await self._run(
                self._custom.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                AVATAR_SESSION.plural,
                name,
                patch,
                field_manager=FIELD_MANAGER,
                _content_type="application/merge-patch+json",
            )
        except _NotFoundError:
            return None
        return AvatarSession.model_validate(raw)

    async def delete_session(self, name: str) -> None:
        """Background propagation: the owned Secret (and the worker pod) go with it. Gone
        already is fine."""
        try:
            await self._run(
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                AVATAR_SESSION.plural,
                name,
                propagation_policy="Background",
            )
        except _NotFoundError:
            return

    async def create_token_secret(self, body: dict[str, Any]) -> None:
        await self._run(self._create_secret_unread, body)

    def _create_secret_unread(self, body: dict[str, Any], **options: Any) -> None:
        # The reply echoes the token: read it off the wire unparsed and drop it.
        response = self._core.create_namespaced_secret(
            self.namespace, body, field_manager=FIELD_MANAGER, _preload_content=False, **options
        )
        response.drain_conn()
        response.release_conn()

    # --- tenants and avatars -------------------------------------------------------------------

    async def get_tenant(self, name: str) -> Tenant | None:
        raw = await self._get_custom(TENANT.plural, name)
        return None if raw is None else Tenant.model_validate(raw)

    async def list_tenants(self) -> list[Tenant]:
        return await self._list_custom(TENANT.plural, None, Tenant)

    async def create_tenant(self, tenant: Tenant) -> Tenant:
        body = tenant.to_k8s()
        body.pop("status", None)
        body["metadata"] = {"name": tenant.metadata.name, "labels": tenant.metadata.labels}
        raw = await self._run(
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            TENANT.plural,
            body,
            field_manager=FIELD_MANAGER,
        )
        return Tenant.model_validate(raw)

    async def replace_tenant_spec(self, tenant: Tenant) -> Tenant:
        """Conditional on the resourceVersion it was read at (KubeConflictError if it moved)."""
        patch = {
            "metadata": {"resourceVersion": tenant.metadata.resource_version},
            "spec": tenant.spec.to_k8s(),
        }
        raw = await self._run(
            self._custom.patch_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            TENANT.plural,
            tenant.metadata.name or "",
            patch,
            field_manager=FIELD_MANAGER,
            _content_type="application/merge-patch+json",
        )
        return Tenant.model_validate(raw)

    async def get_avatar(self, name: str) -> Avatar | None:
        raw = await self._get_custom(AVATAR.plural, name)
        return None if raw is None else Avatar.model_validate(raw)

    async def list_avatars(self, label_selector: str | None = None) -> list[Avatar]:
        return await self._list_custom(AVATAR.plural, label_selector, Avatar)

    async def create_avatar(self, body: dict[str, Any]) -> Avatar:
        raw = await self._run(
            self._custom.create_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            AVATAR.plural,
            body,
            field_manager=FIELD_MANAGER,
        )
        return Avatar.model_validate(raw)

    async def delete_avatar(self, name: str) -> None:
        """Gone already is fine."""
        try:
            await self._run(
                self._custom.delete_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                AVATAR.plural,
                name,
            )
        except _NotFoundError:
            return

    async def ping(self) -> None:
        """Cheap proof that the API server answers and we may read our resources."""
        await self._run(
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            TENANT.plural,
            limit=1,
        )

    # --- plumbing ------------------------------------------------------------------------------

    async def _get_custom(self, plural: str, name: str) -> dict[str, Any] | None:
        try:
            raw = await self._run(
                self._custom.get_namespaced_custom_object,
                GROUP,
                VERSION,
                self.namespace,
                plural,
                name,
            )
        except _NotFoundError:
            return None
        return _as_dict(raw)

    async def _list_custom(
        self, plural: str, label_selector: str | None, model: type[M]
    ) -> list[M]:
        raw = await self._run(
            self._custom.list_namespaced_custom_object,
            GROUP,
            VERSION,
            self.namespace,
            plural,
            label_selector=label_selector,
        )
        items: list[M] = []
        for item in _as_dict(raw).get("items", []):
            try:
                items.append(model.model_validate(item))
            except ValidationError as error:
                # One object someone hand-edited into a bad shape must not break every listing.
                name = item.get("metadata", {}).get("name")
                log.warning("skipping_invalid_object", plural=plural, name=name, error=str(error))
        return items

    async def _run(self, call: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        bound = functools.partial(call, *args, _request_timeout=self._timeout, **kwargs)
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, bound)
        except ApiException as error:
            raise _translate(error) from None
        except (urllib3.exceptions.HTTPError, OSError) as error:
            log.warning("kubernetes_unreachable", error_type=type(error).__name__)
            raise service_unavailable(
                "kubernetes_unavailable",
                "The cluster is not answering. Retry later.",
                retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
            ) from None


class _NotFoundError(Exception):
    pass


def _translate(error: ApiException) -> Exception:
    """Only status and reason are logged: a response body may echo what was sent."""
    status = error.status or 0
    if status == 404:
        return _NotFoundError()
    if status == 409:
        return KubeConflictError(error.reason)
    if status == 422:
        return KubeInvalidError(_status_message(error))
    if status == 429 or status >= 500:
        log.warning("kubernetes_busy", status=status, reason=error.reason)
        return service_unavailable(
            "kubernetes_unavailable",
            "The cluster is busy. Retry later.",
            retry_after=UNAVAILABLE_RETRY_AFTER_SECONDS,
        )
    log.error("kubernetes_refused", status=status, reason=error.reason)
    return internal_error()


def _status_message(error: ApiException) -> str:
    """The `message` of a Kubernetes Status reply (for a CR, not a Secret: safe to read)."""
    try:
        body = json.loads(error.body or "{}")
    except ValueError:
        return str(error.reason)
    return str(body.get("message", error.reason)) if isinstance(body, dict) else str(error.reason)


def _as_dict(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(raw).__name__}")
    return raw


SESSION_SELECTOR = f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY}"


def tenant_selector(tenant: str) -> str:
    return f"{contract.LABEL_TENANT}={tenant},{SESSION_SELECTOR}"
