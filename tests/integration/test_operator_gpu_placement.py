"""Admission counts only the GPUs a worker could really be scheduled onto.

Two one-GPU kwok nodes; the worker fits on one, the other is kept from it (a taint the worker
does not tolerate, labels its nodeSelector does not match, or its GPU held by someone else's
pod). The first session takes the usable GPU; the second must stay queued although the other
node shows a free GPU, and start once the obstacle goes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from kubernetes import client as k8s

from testbed.kwok import GPU_RESOURCE, GPU_TAINT, GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from tests.integration.worker_standin import WorkerStandIn

POOL_LABEL = "facecast.io/pool"
OTHER_TAINT = {"key": "dedicated", "value": "training", "effect": "NoSchedule"}


@pytest.fixture
def operator_env() -> dict[str, str]:
    return {"FACECAST_WORKER_NODE_SELECTOR": f'{{"{POOL_LABEL}": "avatars"}}'}


def label(core: k8s.CoreV1Api, node: str, pool: str | None) -> None:
    core.patch_node(node, {"metadata": {"labels": {POOL_LABEL: pool}}})


def taint(core: k8s.CoreV1Api, node: str, taints: list[dict[str, str]]) -> None:
    core.patch_node(node, {"spec": {"taints": taints}})


def gpu_pod(namespace: str, node: str) -> k8s.V1Pod:
    """Another workload's pod, bound straight to the node, holding its GPU."""
    manifest: dict[str, Any] = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": "training", "namespace": namespace},
        "spec": {
            "nodeName": node,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "train",
                    "image": "example.invalid/train:1",
                    "resources": {"limits": {GPU_RESOURCE: "1"}},
                }
            ],
        },
    }
    return k8s.V1Pod.model_validate(manifest)


# Each obstacle: (put it on the blocked node, take it away).
Change = Callable[[k8s.CoreV1Api, str, str], object]
Obstacle = tuple[Change, Change]
OBSTACLES: dict[str, Obstacle] = {
    "untolerated_taint": (
        lambda core, _ns, node: taint(core, node, [GPU_TAINT, OTHER_TAINT]),
        lambda core, _ns, node: taint(core, node, [GPU_TAINT]),
    ),
    "node_selector_mismatch": (
        lambda core, _ns, node: label(core, node, None),
        lambda core, _ns, node: label(core, node, "avatars"),
    ),
    "gpu_held_by_another_pod": (
        lambda core, ns, node: core.create_namespaced_pod(ns, gpu_pod(ns, node)),
        lambda core, ns, _node: core.delete_namespaced_pod("training", ns, grace_period_seconds=0),
    ),
}


@pytest.mark.parametrize("obstacle", list(OBSTACLES))
def test_a_session_stays_queued_when_the_free_gpu_is_on_a_node_the_worker_cannot_use(
    obstacle: str, operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    core = k8s.CoreV1Api(api_client)
    usable, blocked = gpu_nodes(2)
    for node in (usable, blocked):
        label(core, node, "avatars")
    put, take_away = OBSTACLES[obstacle]
    put(core, sessions.namespace, blocked)
    sessions.create_tenant()

    first = sessions.create(idleTimeoutSeconds=None)
    pod = sessions.wait_pod_running(first)
    assert pod.spec is not None
    assert pod.spec.node_name == usable
    WorkerStandIn(api_client, sessions.namespace, first).first_frame()
    sessions.wait_phase(first, "running")

    second = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(second, "queued")
    # A witness created later: once it is queued, admission has run with `second` waiting.
    witness = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(witness, "queued")
    waiting = sessions.get(second)
    assert waiting is not None
    assert waiting.status.phase == "queued"
    assert sessions.pod(second) is None

    take_away(core, sessions.namespace, blocked)
    sessions.wait_phase(second, "starting", timeout=30)
    started = sessions.wait_pod_running(second)
    assert started.spec is not None
    assert started.spec.node_name == blocked
    still = sessions.get(witness)
    assert still is not None
    assert still.status.phase == "queued"


DEDICATED_POOL = {
    "FACECAST_WORKER_NODE_SELECTOR": f'{{"{POOL_LABEL}": "avatars"}}',
    "FACECAST_COUNT_OTHER_PODS": "false",
    # The second worker cannot be scheduled (the other pod has its GPU): keep it `starting`.
    "FACECAST_START_TIMEOUT_SECONDS": "120",
}


@pytest.mark.parametrize("operator_env", [DEDICATED_POOL], ids=["count_other_pods_off"])
def test_with_other_pods_uncounted_admission_counts_only_our_own_workers(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    """A pool kept for Facecast: no cluster-wide pod watch. Sessions are admitted at once
    (nothing waits for a cluster listing that never comes), our own workers fill the pool, and
    another workload's pod, which on such a pool should not be there, is not counted."""
    core = k8s.CoreV1Api(api_client)
    nodes = gpu_nodes(2)
    for node in nodes:
        label(core, node, "avatars")
    core.create_namespaced_pod(sessions.namespace, gpu_pod(sessions.namespace, nodes[1]))
    sessions.create_tenant()

    first = sessions.create(idleTimeoutSeconds=None)
    pod = sessions.wait_pod_running(first)
    assert pod.spec is not None
    assert pod.spec.node_name == nodes[0]
    # The other pod holds the second GPU, but only our own worker is counted: admitted.
    second = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(second, "starting", timeout=30)
    # Two workers of ours on two GPUs: the pool is full.
    third = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(third, "queued")
    witness = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(witness, "queued")
    waiting = sessions.get(third)
    assert waiting is not None
    assert waiting.status.phase == "queued"
    assert sessions.pod(third) is None
