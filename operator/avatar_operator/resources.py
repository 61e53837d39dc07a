"""Pure builders: a worker's pod spec (its pool's shape, the operator's shared pieces), and the
session status patch. No I/O.

Like KubeSpawner's `objects.py`: what the operator sends to the API server about a worker is
built here and in `pool_objects.py`, so tests can read exactly what a pod will look like.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from avatar_crds import contract
from avatar_crds.session import AvatarSessionStatus
from avatar_operator.settings import WorkerPodSettings

WORKER_CONTAINER = "worker"
WORKER_UID = 10001


@dataclass(frozen=True)
class WorkerShape:
    """What a worker's pool decides about its pod: image, size, GPUs and placement."""

    image: str
    image_pull_policy: str
    gpu_resource_name: str
    gpu_count: int
    node_selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, Any]]
    runtime_class_name: str | None
    resources: Mapping[str, Mapping[str, str]]


def worker_pod_spec(
    settings: WorkerPodSettings,
    shape: WorkerShape,
    *,
    account: str,
    env: list[dict[str, Any]],
    mounts: list[dict[str, Any]],
    volumes: list[dict[str, Any]],
) -> dict[str, Any]:
    """A worker pod's spec: its placement and size from its pool's `shape`; from the
    operator's `settings`, the scratch, TTS key, avatar and model volumes, the transport
    allow-list and TTS variables, priority, grace period and network; and the locked-down
    security context. `env`, `mounts` and `volumes` are the caller's own, put first."""
    resources: dict[str, dict[str, str]] = {
        kind: dict(values) for kind, values in shape.resources.items()
    }
    if shape.gpu_count:
        gpus = str(shape.gpu_count)
        resources.setdefault("limits", {})[shape.gpu_resource_name] = gpus
        resources.setdefault("requests", {})[shape.gpu_resource_name] = gpus
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
        "nodeSelector": dict(shape.node_selector),
        "tolerations": [dict(t) for t in shape.tolerations],
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
                "image": shape.image,
                "imagePullPolicy": shape.image_pull_policy,
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
    if shape.runtime_class_name:
        spec["runtimeClassName"] = shape.runtime_class_name
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


def status_patch(old: AvatarSessionStatus, new: AvatarSessionStatus) -> dict[str, Any] | None:
    """A JSON merge patch of the operator's status fields; None when nothing changed.

    `worker` belongs to the worker and is never written here, so the two writers cannot
    overwrite each other.
    """
    if old == new:
        return None  # the common case, without dumping either (each reconciliation asks)
    before = old.to_k8s()
    after = new.to_k8s()
    before.pop("worker", None)
    after.pop("worker", None)
    patch: dict[str, Any] = {key: value for key, value in after.items() if before.get(key) != value}
    patch.update({key: None for key in before if key not in after})
    return {"status": patch} if patch else None
