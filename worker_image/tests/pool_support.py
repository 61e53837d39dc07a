"""Test helpers for the pool worker: its identity and grant made as the pools design has the
operator make them (a ServiceAccount, and a Role and RoleBinding of the same name whose rules
name the bound sessions), sessions bound to a slot, and the pool worker as a process."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import uuid
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.avatar import AvatarSpec
from avatar_crds.enums import Quality
from avatar_crds.ids import SESSION_PREFIX, new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION
from avatar_crds.meta import API_VERSION, GROUP, VERSION, owner_reference
from avatar_crds.session import AvatarSession
from testbed.controlplane import ControlPlane
from worker_image.tests.support import (
    AVATAR_NAME,
    LOOPBACK_LIVEKIT_CIDRS,
    ServerLike,
    mint_token,
    session_resource,
    write_astronaut_avatar,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
RBAC_GROUP = "rbac.authorization.k8s.io"
WORKER = "facecast-worker"


def name_of(session: AvatarSession) -> str:
    name = session.metadata.name
    assert name is not None
    return name


def grant_rules(role: str, sessions: list[AvatarSession]) -> list[dict[str, Any]]:
    """The Role's rules for the sessions bound to the worker (POOLS design): its own Role
    always; each session, its status, its token Secret and its Avatar by name; no rule with an
    empty resourceNames (that would be every name)."""
    rules: list[dict[str, Any]] = [
        {
            "apiGroups": [RBAC_GROUP],
            "resources": ["roles"],
            "verbs": ["get", "watch"],
            "resourceNames": [role],
        }
    ]
    if not sessions:
        return rules
    names = sorted(name_of(session) for session in sessions)
    secrets = sorted(session.spec.token_secret_ref.name for session in sessions)
    avatars = sorted({session.spec.avatar_ref for session in sessions})
    return [
        *rules,
        {
            "apiGroups": [GROUP],
            "resources": [AVATAR_SESSION.plural],
            "verbs": ["get", "watch"],
            "resourceNames": names,
        },
        {
            "apiGroups": [GROUP],
            "resources": [f"{AVATAR_SESSION.plural}/status"],
            "verbs": ["get", "patch"],
            "resourceNames": names,
        },
        {"apiGroups": [""], "resources": ["secrets"], "verbs": ["get"], "resourceNames": secrets},
        {
            "apiGroups": [GROUP],
            "resources": [AVATAR.plural],
            "verbs": ["get"],
            "resourceNames": avatars,
        },
    ]


@dataclass
class PoolIdentity:
    """One pool worker's pod name and its account, Role and RoleBinding (one name)."""

    api: k8s.ApiClient
    namespace: str
    pool: str
    pod: str
    account: str

    @classmethod
    def create(cls, api: k8s.ApiClient, namespace: str, pool: str = "pool-a") -> PoolIdentity:
        suffix = uuid.uuid4().hex[:5]
        identity = cls(
            api=api,
            namespace=namespace,
            pool=pool,
            pod=f"{contract.pool_worker_generate_name(pool)}{suffix}",
            account=f"{contract.pool_worker_account_generate_name(pool)}{suffix}",
        )
        meta = k8s.V1ObjectMeta(name=identity.account)
        k8s.CoreV1Api(api).create_namespaced_service_account(
            namespace, k8s.V1ServiceAccount(metadata=meta)
        )
        rbac = k8s.RbacAuthorizationV1Api(api)
        role: Any = {
            "metadata": {"name": identity.account},
            "rules": grant_rules(identity.account, []),
        }
        rbac.create_namespaced_role(namespace, role)
        binding: Any = {
            "metadata": {"name": identity.account},
            "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": identity.account},
            "subjects": [
                {"kind": "ServiceAccount", "name": identity.account, "namespace": namespace}
            ],
        }
        rbac.create_namespaced_role_binding(namespace, binding)
        return identity

    def grant(self, *sessions: AvatarSession, avatars: bool = True) -> None:
        """Rewrite the Role to name exactly `sessions`, as the operator does (without their
        Avatars if not `avatars`: a grant the operator never writes, to see it refused)."""
        rules = grant_rules(self.account, list(sessions))
        if not avatars:
            rules = [rule for rule in rules if AVATAR.plural not in rule["resources"]]
        k8s.RbacAuthorizationV1Api(self.api).patch_namespaced_role(
            self.account, self.namespace, {"rules": rules}
        )


@dataclass
class Sessions:
    """AvatarSessions made and moved through their phases as the API and the operator would."""

    api: k8s.ApiClient
    namespace: str
    livekit: ServerLike
    tokens: dict[str, str] = field(default_factory=dict)

    @property
    def custom(self) -> k8s.CustomObjectsApi:
        return k8s.CustomObjectsApi(self.api)

    def create(self, *, with_token: bool = True, quality: Quality = Quality.MOCK) -> AvatarSession:
        name = to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)
        room = f"room-{name}"
        session = session_resource(
            url=self.livekit.url, room=room, name=name, namespace=self.namespace, quality=quality
        )
        body = session.to_k8s()
        body["metadata"] = {"name": name}
        body.pop("status", None)
        created = cast(
            dict[str, Any],
            self.custom.create_namespaced_custom_object(
                GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, body
            ),
        )
        if with_token:
            token = mint_token(self.livekit, WORKER, room)
            self.tokens[name] = token
            # As the API makes it: owned by the session, labelled for it.
            owner = owner_reference(AVATAR_SESSION.kind, name, created["metadata"]["uid"])
            k8s.CoreV1Api(self.api).create_namespaced_secret(
                self.namespace,
                k8s.V1Secret(
                    metadata=k8s.V1ObjectMeta(
                        name=contract.token_secret_name(name),
                        labels=contract.session_labels(name, session.spec.tenant, "token"),
                        owner_references=[owner],
                    ),
                    string_data={contract.TOKEN_SECRET_KEY: token},
                ),
            )
        return session

    def create_avatar(self, store: Path) -> AvatarSpec:
        """The Avatar every session names (`AVATAR_NAME`): the astronaut, its image in `store`."""
        spec = write_astronaut_avatar(store)
        body = {
            "apiVersion": API_VERSION,
            "kind": AVATAR.kind,
            "metadata": {"name": AVATAR_NAME},
            "spec": spec.to_k8s(),
        }
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, body
        )
        return spec

    def bind(
        self, session: AvatarSession, identity: PoolIdentity, slot: int, *, pod: str = ""
    ) -> None:
        """The operator's one write that takes the slot: phase starting with the binding."""
        pod = pod or identity.pod
        self._status(
            session,
            {
                "phase": "starting",
                "startingAt": _now(),
                "podName": pod,
                "binding": {"pool": identity.pool, "pod": pod, "slot": slot},
            },
        )

    def end(
        self, session: AvatarSession, phase: str = "ending", reason: str = "user_ended"
    ) -> datetime:
        """The operator ends it (`ending`, then a terminal phase); when the write was made."""
        at = datetime.now(UTC)
        stamp = "endingAt" if phase == "ending" else "finishedAt"
        self._status(session, {"phase": phase, "reason": reason, stamp: _now()})
        return at

    def get(self, session: AvatarSession) -> AvatarSession:
        raw = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, name_of(session)
        )
        return AvatarSession.model_validate(raw)

    def worker_status(self, session: AvatarSession) -> dict[str, Any] | None:
        raw = self.custom.get_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, name_of(session)
        )
        worker = cast(dict[str, Any], raw).get("status", {}).get("worker")
        return cast(dict[str, Any] | None, worker)

    def _status(self, session: AvatarSession, status: dict[str, Any]) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            name_of(session),
            {"status": status},
        )


def _now() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class PoolWorkerProcess:
    """`python -m avatar_worker pool` with the worker account's own token, as its pod runs it."""

    def __init__(
        self,
        control_plane: ControlPlane,
        identity: PoolIdentity,
        directory: Path,
        *,
        slots: int,
    ) -> None:
        directory.mkdir(parents=True, exist_ok=True)
        self.ready_file = directory / "ready"
        self.stderr_path = directory / "pool-worker.stderr"
        kubeconfig = control_plane.kubeconfig_for_service_account(
            identity.namespace, identity.account
        )
        env = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("KUBERNETES_", "FACECAST_"))  # no in-cluster credentials
        }
        env.update(
            {
                "KUBECONFIG": str(kubeconfig),
                contract.ENV_POD_NAME: identity.pod,
                contract.ENV_SESSION_NAMESPACE: identity.namespace,
                contract.ENV_POOL_NAME: identity.pool,
                contract.ENV_WORKER_GRANT: identity.account,
                contract.ENV_WORKER_SLOTS: str(slots),
                contract.ENV_AVATAR_STORE: str(directory / "store"),
                contract.ENV_TRANSPORT_ALLOWED_CIDRS: LOOPBACK_LIVEKIT_CIDRS,
            }
        )
        self._stderr = self.stderr_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "avatar_worker", "pool", "--ready-file", str(self.ready_file)],
            cwd=REPO_ROOT,
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"the pool worker did not exit within {timeout}s:\n{self.stderr()[-3000:]}"
            ) from exc
        finally:
            self._stderr.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._stderr.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """Its log so far, one JSON object a line (a line being written is left for later)."""
        text = self.stderr()
        complete = text[: text.rfind("\n") + 1]
        return [json.loads(line) for line in complete.splitlines() if line.strip()]

    def logged(self, event: str, **fields: Any) -> list[dict[str, Any]]:
        return [
            entry
            for entry in self.events()
            if entry.get("event") == event
            and all(entry.get(key) == value for key, value in fields.items())
        ]
