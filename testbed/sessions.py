"""Create and read Facecast resources in the test control plane, and wait on them."""

from __future__ import annotations

from typing import Any, cast

from kubernetes import client as k8s

from avatar_crds import contract, ids
from avatar_crds.kinds import AVATAR_SESSION, TENANT
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from avatar_crds.session import AvatarSession
from testbed.wait import wait_for

AVATAR = "av-01jcz3v7m4q8r2t6w9x0y1z2a3"


class Sessions:
    def __init__(self, api_client: k8s.ApiClient, namespace: str) -> None:
        self.custom = k8s.CustomObjectsApi(api_client)
        self.core = k8s.CoreV1Api(api_client)
        self.namespace = namespace

    def create_tenant(
        self,
        name: str = "acme",
        max_concurrent: int = 50,
        minutes: int = 1000,
        webhook: dict[str, Any] | None = None,
    ) -> None:
        spec: dict[str, Any] = {
            "plan": {"maxConcurrentSessions": max_concurrent, "minutes": minutes}
        }
        if webhook is not None:
            spec["webhook"] = webhook
        body = {
            "apiVersion": API_VERSION,
            "kind": "Tenant",
            "metadata": {"name": name},
            "spec": spec,
        }
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, TENANT.plural, body
        )

    def create(self, tenant: str = "acme", **spec: Any) -> str:
        name = ids.to_resource_name(ids.new_public_id(ids.SESSION_PREFIX), ids.SESSION_PREFIX)
        body = {
            "apiVersion": API_VERSION,
            "kind": "AvatarSession",
            "metadata": {"name": name},
            "spec": {
                "tenant": tenant,
                "avatarRef": AVATAR,
                "quality": "mock",
                "transport": {
                    "type": "livekit",
                    "livekit": {"url": "ws://127.0.0.1:7880", "roomName": name},
                },
                "tokenSecretRef": {"name": contract.token_secret_name(name)},
                **spec,
            },
        }
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, body
        )
        return name

    def get(self, name: str) -> AvatarSession | None:
        try:
            body = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, name
            )
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise
        return AvatarSession.model_validate(body)

    def patch_spec(self, name: str, **spec: Any) -> None:
        self.custom.patch_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, name, {"spec": spec}
        )

    def delete(self, name: str) -> None:
        self.custom.delete_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, name
        )

    def wait_phase(self, name: str, phase: str, timeout: float = 30) -> AvatarSession:
        def reached() -> AvatarSession | None:
            session = self.get(name)
            return session if session and session.status.phase == phase else None

        return wait_for(reached, timeout=timeout, description=f"{name} {phase}")

    def pod(self, name: str) -> k8s.V1Pod | None:
        """The pool worker the session is bound to (None before it is bound, or once gone)."""
        session = self.get(name)
        worker = session.status.pod_name if session is not None else None
        if worker is None:
            return None
        try:
            return self.core.read_namespaced_pod(worker, self.namespace)
        except k8s.ApiException as exc:
            if exc.status == 404:
                return None
            raise

    def wait_pod_running(self, name: str, timeout: float = 30) -> k8s.V1Pod:
        def running() -> k8s.V1Pod | None:
            pod = self.pod(name)
            return pod if pod and pod.status and pod.status.phase == "Running" else None

        return wait_for(running, timeout=timeout, description=f"{name} worker pod Running")

    def assert_left_queued(self, name: str) -> str:
        """Assert that an admission pass ran and left `name` queued, unbound and without a
        worker: a witness session created later is queued only once a pass has seen it (and
        `name`, older). Returns the witness, which waits behind `name`."""
        witness = self.create(idleTimeoutSeconds=None)
        self.wait_phase(witness, "queued")
        waiting = self.get(name)
        assert waiting is not None
        assert waiting.status.phase == "queued"
        assert waiting.status.binding is None
        assert self.pod(name) is None
        return witness

    def tenant_usage(self, name: str = "acme") -> dict[str, Any]:
        tenant = cast(
            dict[str, Any],
            self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, TENANT.plural, name
            ),
        )
        usage: dict[str, Any] = tenant["status"]["usage"]
        return usage

    def event_reasons(self, name: str) -> list[str]:
        events = self.core.list_namespaced_event(
            self.namespace, field_selector=f"involvedObject.name={name}"
        )
        ordered = sorted(
            events.items, key=lambda e: e.first_timestamp.timestamp() if e.first_timestamp else 0
        )
        return [event.reason or "" for event in ordered]
