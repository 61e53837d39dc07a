"""Pure builders of what the pool controller sends to the API server about a WorkerPool's
workers: each worker's identity (a ServiceAccount, and a Role and RoleBinding of the same name),
its grant (the Role's rules), its pod, and the patches that drain it. No I/O.

The counterpart of `resources.py` (a session's own worker), sharing its pod pieces. The API
server names a worker's account and pod (`generateName`); everything is owned by the pool, so
deleting the pool takes every worker with it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, owner_reference
from avatar_crds.pool import WorkerPool, WorkerTemplate
from avatar_operator.resources import WorkerShape, worker_pod_spec
from avatar_operator.settings import WorkerPodSettings

RBAC_GROUP = "rbac.authorization.k8s.io"
POOL_WORKER_COMMAND = "pool"
"""The worker image's entry point serving a pool's slots (`python -m avatar_worker pool`)."""
READINESS_PERIOD_SECONDS = 2


@dataclass(frozen=True)
class GrantedSession:
    """What a worker's grant names of one session bound to it."""

    name: str
    avatar: str

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> GrantedSession:
        return cls(name=body["metadata"]["name"], avatar=body["spec"]["avatarRef"])


def pool_owner(pool: WorkerPool) -> dict[str, Any]:
    return owner_reference(WORKER_POOL.kind, _name(pool), pool.metadata.uid)


def _metadata(pool: WorkerPool, **name: str) -> dict[str, Any]:
    """`name=` or `generateName=`, with the pool's labels and ownership."""
    return {
        **name,
        "namespace": _namespace(pool),
        "labels": contract.pool_worker_labels(_name(pool)),
        "ownerReferences": [pool_owner(pool)],
    }


def worker_account(pool: WorkerPool) -> dict[str, Any]:
    """Created first: the API server picks its name, which the Role, the RoleBinding and the
    pod then take."""
    return {
        "apiVersion": "v1",
        "kind": "ServiceAccount",
        "metadata": _metadata(
            pool, generateName=contract.pool_worker_account_generate_name(_name(pool))
        ),
        "automountServiceAccountToken": True,
    }


def grant_rules(account: str, sessions: Iterable[GrantedSession]) -> list[dict[str, Any]]:
    """The worker's grant: its own Role (to watch it), and for each session bound to it the
    session, its status, its token Secret and its avatar, all by name.

    A rule with no names is left out: an empty `resourceNames` means every name to RBAC. The
    names are sorted, so one set of sessions always makes the same rules (a rewrite that
    changes nothing is seen as such). The API server allows a `watch` under resourceNames only
    with a field selector naming the object, which is how the worker watches."""
    bound = sorted(set(sessions), key=lambda s: s.name)
    names = [s.name for s in bound]
    rules = [
        _rule(RBAC_GROUP, "roles", ["get", "watch"], [account]),
        _rule(GROUP, "avatarsessions", ["get", "watch"], names),
        _rule(GROUP, "avatarsessions/status", ["get", "patch"], names),
        # The token Secret's name comes from the session's, never from its spec: the
        # worker is granted exactly the Secret the API made for that session.
        _rule("", "secrets", ["get"], [contract.token_secret_name(n) for n in names]),
        _rule(GROUP, "avatars", ["get"], sorted({s.avatar for s in bound})),
    ]
    return [rule for rule in rules if rule["resourceNames"]]


def _rule(group: str, resource: str, verbs: list[str], names: list[str]) -> dict[str, Any]:
    return {"apiGroups": [group], "resources": [resource], "verbs": verbs, "resourceNames": names}


def worker_role(
    pool: WorkerPool, account: str, sessions: Iterable[GrantedSession] = ()
) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "Role",
        "metadata": _metadata(pool, name=account),
        "rules": grant_rules(account, sessions),
    }


def worker_role_binding(pool: WorkerPool, account: str) -> dict[str, Any]:
    return {
        "apiVersion": f"{RBAC_GROUP}/v1",
        "kind": "RoleBinding",
        "metadata": _metadata(pool, name=account),
        "roleRef": {"apiGroup": RBAC_GROUP, "kind": "Role", "name": account},
        "subjects": [{"kind": "ServiceAccount", "name": account, "namespace": _namespace(pool)}],
    }


def worker_shape(template: WorkerTemplate) -> WorkerShape:
    """The pool's image, size, GPUs and placement for its workers' pods."""
    tolerations = [t.to_k8s() for t in template.tolerations]
    if template.gpus and not any(_tolerates(t, template.gpu_resource_name) for t in tolerations):
        # GPU nodes are tainted with their GPU resource's name; a pod asking for that resource
        # tolerates it (Kubernetes' ExtendedResourceToleration admission plugin does the same).
        tolerations.append(
            {"key": template.gpu_resource_name, "operator": "Exists", "effect": "NoSchedule"}
        )
    resources = {
        kind: dict(values)
        for kind, values in (
            ("requests", template.resources.requests),
            ("limits", template.resources.limits),
        )
        if values
    }
    return WorkerShape(
        image=template.image,
        image_pull_policy=template.image_pull_policy,
        gpu_resource_name=template.gpu_resource_name,
        gpu_count=template.gpus,
        node_selector=dict(template.node_selector),
        tolerations=tolerations,
        runtime_class_name=template.runtime_class_name,
        resources=resources,
    )


def _tolerates(toleration: Mapping[str, Any], key: str) -> bool:
    """The pool already says how its pods meet taints of that key (or of every key)."""
    return toleration.get("key") == key or (
        toleration.get("key") is None and toleration.get("operator") == "Exists"
    )


def worker_pod(pool: WorkerPool, account: str, settings: WorkerPodSettings) -> dict[str, Any]:
    """A worker of the pool, named by the API server, running as its own `account`. Its slot
    count is fixed at creation (an annotation): a later change of the pool leaves it as is."""
    name = _name(pool)
    slots = str(pool.spec.slots_per_worker)
    env: list[dict[str, Any]] = [
        {"name": contract.ENV_POD_NAME, "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}},
        {"name": contract.ENV_SESSION_NAMESPACE, "value": _namespace(pool)},
        {"name": contract.ENV_POOL_NAME, "value": name},
        {"name": contract.ENV_WORKER_GRANT, "value": account},
        {"name": contract.ENV_WORKER_SLOTS, "value": slots},
        {"name": contract.ENV_AVATAR_STORE, "value": contract.AVATAR_STORE_DIR},
        # The tiers whose renderers it loads before it reports ready.
        {"name": contract.ENV_SERVED_QUALITIES, "value": ",".join(pool.spec.qualities)},
    ]
    if pool.spec.worker.gpus == 0:
        # A CPU tier's worker may land on a GPU node (its runtime class, tolerations): the
        # NVIDIA runtime would otherwise hand it every GPU there, none of them requested.
        env.append({"name": "NVIDIA_VISIBLE_DEVICES", "value": "void"})
    # No token volume: the worker reads each session's token Secret through its grant.
    spec = worker_pod_spec(
        settings,
        worker_shape(pool.spec.worker),
        account=account,
        env=env,
        mounts=[],
        volumes=[],
    )
    container = spec["containers"][0]
    container["args"] = [POOL_WORKER_COMMAND]
    # Ready once the renderer is loaded: only then is a slot offered to a session.
    container["readinessProbe"] = {
        "exec": {"command": ["cat", contract.WORKER_READY_FILE]},
        "periodSeconds": READINESS_PERIOD_SECONDS,
    }
    metadata = _metadata(pool, generateName=contract.pool_worker_generate_name(name))
    metadata["annotations"] = {contract.ANNOTATION_SLOTS: slots}
    return {"apiVersion": "v1", "kind": "Pod", "metadata": metadata, "spec": spec}


def draining_patch(since: datetime | None) -> dict[str, Any]:
    """A merge patch that drains a worker from `since`, or (None) takes it back."""
    value = None if since is None else rfc3339(since)
    return {"metadata": {"annotations": {contract.ANNOTATION_DRAINING_SINCE: value}}}


def rfc3339(moment: datetime) -> str:
    """As Kubernetes writes times: UTC, whole seconds, `Z`."""
    return moment.astimezone(UTC).replace(microsecond=0, tzinfo=None).isoformat() + "Z"


def _name(pool: WorkerPool) -> str:
    if not pool.metadata.name or not pool.metadata.namespace:
        raise ValueError("a pool needs metadata.name and metadata.namespace to own workers")
    return pool.metadata.name


def _namespace(pool: WorkerPool) -> str:
    _name(pool)
    return pool.metadata.namespace or ""
