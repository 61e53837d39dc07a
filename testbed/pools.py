"""WorkerPools in the test control plane: every session runs on a pool worker's slot.

`create_pool` makes the mock tier's pool; `one_worker_per_session` is the configuration that
gives each session a cold worker of its own (no buffer, one slot a worker, idle workers removed
at once), as a pool, not as a code path of its own.
"""

from __future__ import annotations

from typing import Any

from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import API_VERSION, GROUP, VERSION

POOL = "mock-pool"


def create_pool(api_client: k8s.ApiClient, namespace: str, **spec: Any) -> None:
    """The mock tier's pool, one GPU a worker, no buffer, idle workers removed at once."""
    body = {
        "apiVersion": API_VERSION,
        "kind": WORKER_POOL.kind,
        "metadata": {"name": POOL},
        "spec": {
            "qualities": ["mock"],
            "worker": {"image": "facecast/worker:test", "gpus": 1},
            "buffer": 0,
            "scaleDownDelaySeconds": 0,
            **spec,
        },
    }
    custom = k8s.CustomObjectsApi(api_client)
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, WORKER_POOL.plural, body)


def one_worker_per_session(api_client: k8s.ApiClient, namespace: str, **spec: Any) -> None:
    """A cold worker per session, started when it queues and removed once it is free."""
    sizing: dict[str, Any] = {"slotsPerWorker": 1, "minWorkers": 0, "maxWorkers": 20}
    create_pool(api_client, namespace, **{**sizing, **spec})


def ready_workers(api_client: k8s.ApiClient, namespace: str) -> list[Any]:
    """The pool's ready worker pods (kubernetes client models, typed loosely)."""
    pods: Any = k8s.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=contract.pool_selector(POOL)
    )
    return [
        pod
        for pod in pods.items
        if pod.metadata.deletion_timestamp is None
        and any(c.type == "Ready" and c.status == "True" for c in pod.status.conditions or [])
    ]
