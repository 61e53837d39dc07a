"""Pure builders of the Kubernetes objects the operator owns. Deterministic names from the
session name, owner references to the session, labels from the shared contract. No I/O.

Like KubeSpawner's `objects.py`: everything the operator ever sends to the API server about a
worker is built here, so tests can read exactly what a pod will look like.
"""

from __future__ import annotations

from typing import Any

from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, owner_reference
from avatar_crds.session import AvatarSession, AvatarSessionStatus
from avatar_operator.settings import WorkerPodSettings

WORKER_CONTAINER = "worker"
WORKER_UID = 10001


def session_owner(session: AvatarSession) -> dict[str, Any]:
    """Makes the session the controller: deleting it garbage-collects everything built here."""
    return owner_reference(AVATAR_SESSION.kind, _name(session), session.metadata.uid)


def _metadata(session: AvatarSession, name: str, component: str) -> dict[str, Any]:
    return {
        "name": name,
        "namespace": session.metadata.namespace,
        "labels": contract.session_labels(_name(session), session.spec.tenant, component),
        "ownerReferences": [session_owner(session)],
    }


def worker_pod(session: AvatarSession, settings: WorkerPodSettings) -> dict[str, Any]:
    name = _name(session)
    secret = session.spec.token_secret_ref
    token_volume = {
        "name": "transport-token",
        "secret": {
            "secretName": secret.name,
            "items": [{"key": secret.key, "path": contract.TOKEN_SECRET_KEY}],
            "defaultMode": 0o440,
        },
    }
    spec = worker_pod_spec(
        settings,
        account=contract.worker_account_name(name),
        env=[
            {"name": contract.ENV_SESSION_NAME, "value": name},
            {"name": contract.ENV_SESSION_NAMESPACE, "value": session.metadata.namespace},
            {"name": contract.ENV_TOKEN_FILE, "value": contract.token_file()},
            {"name": contract.ENV_AVATAR_STORE, "value": contract.AVATAR_STORE_DIR},
        ],
        mounts=[
            {"name": "transport-token", "mountPath": contract.TOKEN_MOUNT_DIR, "readOnly": True}
        ],
        volumes=[token_volume],
    )
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": _metadata(session, contract.worker_pod_name(name), "worker"),
        "spec": spec,
    }


def worker_pod_spec(
    settings: WorkerPodSettings,
    *,
    account: str,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    """What every worker pod shares, a session's own or a pool's: its placement and size from
    `settings`, the locked-down security context, the scratch, TTS key, avatar and model
    volumes, and the transport allow-list and TTS variables. `env`, `mounts` and `volumes` are
    the caller's own, put first."""
    resources: dict[str, dict[str, str]] = {
        kind: dict(values) for kind, values in settings.resources.items()
    }
    if settings.gpu_count:
        gpus = str(settings.gpu_count)
        resources.setdefault("limits", {})[settings.gpu_resource_name] = gpus
        resources.setdefault("requests", {})[settings.gpu_resource_name] = gpus
    mounts = [*mounts, {"name": "tmp", "mountPath": "/tmp"}]
    volumes = [*volumes, {"name": "tmp", "emptyDir": {"sizeLimit": "1Gi"}}]
    if settings.tts_openai_api_key_secret:
        mounts.append(
            {"name": "tts-key", "mountPath": contract.TTS_KEY_MOUNT_DIR, "readOnly": True}
        )
        volumes.append(
            {
                "name": "tts-key",
                "secret": {
                    "secretName": settings.tts_openai_api_key_secret,
                    "items": [
                        {
                            "key": settings.tts_openai_api_key_secret_key,
                            "path": contract.TTS_KEY_FILE.rsplit("/", 1)[1],
                        }
                    ],
                    "defaultMode": 0o440,
                },
            }
        )
    for volume, claim, path in (
        ("avatars", settings.avatar_store_claim, contract.AVATAR_STORE_DIR),
        ("models", settings.model_volume_claim, "/models"),
    ):
        if claim:
            mounts.append({"name": volume, "mountPath": path, "readOnly": True})
            volumes.append(
                {"name": volume, "persistentVolumeClaim": {"claimName": claim, "readOnly": True}}
            )
    spec: dict[str, Any] = {
        # A worker that dies mid-session fails the session; restarting it would replay nothing.
        "restartPolicy": "Never",
        "serviceAccountName": account,
        "enableServiceLinks": False,
        "terminationGracePeriodSeconds": settings.termination_grace_seconds,
        "nodeSelector": dict(settings.node_selector),
        "tolerations": [dict(t) for t in settings.tolerations],
        "securityContext": {
            "runAsNonRoot": True,
            "runAsUser": WORKER_UID,
            "runAsGroup": WORKER_UID,
            "fsGroup": WORKER_UID,
            "seccompProfile": {"type": "RuntimeDefault"},
        },
        "containers": [
            {
                "name": WORKER_CONTAINER,
                "image": settings.image,
                "imagePullPolicy": settings.image_pull_policy,
                "env": [
                    *env,
                    *_transport_allow_env(settings),
                    *_tts_env(settings),
                    *_kubernetes_api_env(settings),
                ],
                "resources": resources,
                "volumeMounts": mounts,
                "terminationMessagePolicy": "FallbackToLogsOnError",
                "securityContext": {
                    "allowPrivilegeEscalation": False,
                    "readOnlyRootFilesystem": True,
                    "capabilities": {"drop": ["ALL"]},
                },
            }
        ],
        "volumes": volumes,
    }
    if settings.host_network:
        spec["hostNetwork"] = True
    if settings.runtime_class_name:
        spec["runtimeClassName"] = settings.runtime_class_name
    if settings.priority_class_name:
        spec["priorityClassName"] = settings.priority_class_name
    return spec


def _transport_allow_env(settings: WorkerPodSettings) -> list[dict[str, str]]:
    """The platform's allow-list for the worker's own check of the room's addresses."""
    values = {
        contract.ENV_TRANSPORT_ALLOWED_HOSTS: settings.transport_allowed_hosts,
        contract.ENV_TRANSPORT_ALLOWED_CIDRS: settings.transport_allowed_cidrs,
    }
    return [{"name": name, "value": value} for name, value in values.items() if value]


def _kubernetes_api_env(settings: WorkerPodSettings) -> list[dict[str, str]]:
    """Where the worker's client finds the API server when the `kubernetes` Service does not
    lead there: the variables the kubelet would set from that Service, which a container's
    own env overrides."""
    if not settings.kubernetes_api_host:
        return []
    return [
        {"name": "KUBERNETES_SERVICE_HOST", "value": settings.kubernetes_api_host},
        {"name": "KUBERNETES_SERVICE_PORT", "value": str(settings.kubernetes_api_port)},
    ]


def _tts_env(settings: WorkerPodSettings) -> list[dict[str, str]]:
    """Where the OpenAI-compatible TTS server is, its voices, and the file holding its key:
    the key itself never appears in the pod spec."""
    values = {
        contract.ENV_TTS_OPENAI_BASE_URL: settings.tts_openai_base_url,
        contract.ENV_TTS_OPENAI_VOICES: settings.tts_openai_voices,
        contract.ENV_TTS_OPENAI_API_KEY_FILE: (
            contract.TTS_KEY_FILE if settings.tts_openai_api_key_secret else ""
        ),
    }
    return [{"name": name, "value": value} for name, value in values.items() if value]


def worker_rbac(session: AvatarSession) -> list[dict[str, Any]]:
    """A ServiceAccount per session whose Role reaches only this session and its avatar."""
    name = _name(session)
    account = contract.worker_account_name(name)
    # `watch` by name: the worker follows its session's speech and warnings. The API server
    # allows a watch under resourceNames only with a metadata.name field selector naming it.
    rules = [
        {"apiGroups": [GROUP], "resources": ["avatarsessions"], "verbs": ["get", "watch"],
         "resourceNames": [name]},
        {"apiGroups": [GROUP], "resources": ["avatarsessions/status"], "verbs": ["get", "patch"],
         "resourceNames": [name]},
        {"apiGroups": [GROUP], "resources": ["avatars"], "verbs": ["get"],
         "resourceNames": [session.spec.avatar_ref]},
    ]  # fmt: skip
    return [
        {
            "apiVersion": "v1",
            "kind": "ServiceAccount",
            "metadata": _metadata(session, account, "worker"),
            "automountServiceAccountToken": True,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "Role",
            "metadata": _metadata(session, account, "worker"),
            "rules": rules,
        },
        {
            "apiVersion": "rbac.authorization.k8s.io/v1",
            "kind": "RoleBinding",
            "metadata": _metadata(session, account, "worker"),
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": account},
            "subjects": [
                {
                    "kind": "ServiceAccount",
                    "name": account,
                    "namespace": session.metadata.namespace,
                }
            ],
        },
    ]


def status_patch(old: AvatarSessionStatus, new: AvatarSessionStatus) -> dict[str, Any] | None:
    """A JSON merge patch of the operator's status fields; None when nothing changed.

    `worker` belongs to the worker and is never written here, so the two writers cannot
    overwrite each other.
    """
    before = old.to_k8s()
    after = new.to_k8s()
    before.pop("worker", None)
    after.pop("worker", None)
    patch: dict[str, Any] = {key: value for key, value in after.items() if before.get(key) != value}
    patch.update({key: None for key in before if key not in after})
    return {"status": patch} if patch else None


def _name(session: AvatarSession) -> str:
    if not session.metadata.name or not session.metadata.namespace:
        raise ValueError("a session needs metadata.name and metadata.namespace to own objects")
    return session.metadata.name
