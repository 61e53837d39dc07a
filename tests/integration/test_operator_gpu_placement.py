"""Where a pool worker can run is the Kubernetes scheduler's to decide, and a session only ever
starts on a worker that runs: a session waits `queued`, with no slot, while its worker cannot
be placed on a GPU, and starts once the scheduler finds one.

First, two one-GPU kwok nodes of the pool's node group; the worker fits on one, the other is
kept from it (a taint the worker does not tolerate, labels the pool's nodeSelector does not
match, or its GPU held by someone else's pod). The first session's worker takes the usable GPU;
the second session's worker stays Pending although the other node shows a free GPU, and the
session stays queued until the obstacle goes. Then one GPU for two sessions: the second waits
while the first holds it, and starts once the first has ended and freed it.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from testbed.kwok import GPU_RESOURCE, GPU_TAINT, GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import POOL, one_worker_per_session
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

POOL_LABEL = "facecast.io/pool"
OTHER_TAINT = {"key": "dedicated", "value": "training", "effect": "NoSchedule"}


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


def unschedulable_workers(sessions: Sessions) -> list[k8s.V1Pod]:
    """The pool's workers the scheduler has found no node for."""
    listed = sessions.core.list_namespaced_pod(
        sessions.namespace, label_selector=contract.pool_selector(POOL)
    )
    return [
        pod
        for pod in listed.items
        if any(
            c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
            for c in (pod.status.conditions if pod.status else None) or []
        )
    ]


def node_of(pod: k8s.V1Pod) -> str | None:
    return pod.spec.node_name if pod.spec else None


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
    worker = {"image": "facecast/worker:test", "gpus": 1, "nodeSelector": {POOL_LABEL: "avatars"}}
    one_worker_per_session(api_client, sessions.namespace, worker=worker)
    sessions.create_tenant()

    first = sessions.create(idleTimeoutSeconds=None)
    pod = sessions.wait_pod_running(first)
    assert node_of(pod) == usable
    WorkerStandIn(api_client, sessions.namespace, first).first_frame()
    sessions.wait_phase(first, "running")

    second = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(second, "queued")
    wait_for(lambda: unschedulable_workers(sessions), timeout=30,
             description="the second session's worker found no node")  # fmt: skip
    witness = sessions.assert_left_queued(second)

    take_away(core, sessions.namespace, blocked)
    sessions.wait_phase(second, "starting", timeout=60)
    started = sessions.wait_pod_running(second)
    assert node_of(started) == blocked
    # The one GPU that came free went to the session first in line; the witness still waits.
    still = sessions.get(witness)
    assert still is not None
    assert still.status.phase == "queued"
    assert still.status.binding is None


@pytest.mark.usefixtures("worker_per_session")
def test_a_session_waits_for_a_gpu_and_starts_once_one_is_freed(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    """The pool may grow (maxWorkers 20) but the cluster has one GPU: the second worker is
    Pending, its session queued, until the first session ends and its worker goes."""
    (node,) = gpu_nodes(1)
    sessions.create_tenant()
    first = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_pod_running(first)
    worker = WorkerStandIn(api_client, sessions.namespace, first)
    worker.first_frame()
    sessions.wait_phase(first, "running")

    second = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(second, "queued")
    wait_for(lambda: unschedulable_workers(sessions), timeout=30,
             description="the second session's worker found no GPU")  # fmt: skip
    witness = sessions.assert_left_queued(second)

    sessions.patch_spec(first, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(first, "ending")
    worker.left()
    ended = sessions.wait_phase(first, "ended")
    started = sessions.wait_phase(second, "starting", timeout=60)
    assert ended.status.finished_at is not None
    assert started.status.starting_at is not None
    assert started.status.starting_at >= ended.status.finished_at
    assert node_of(sessions.wait_pod_running(second)) == node
    still = sessions.get(witness)
    assert still is not None
    assert still.status.phase == "queued"
