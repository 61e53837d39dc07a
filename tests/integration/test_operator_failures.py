"""Each way a session's worker can be lost ends the session in `failed` with the right reason,
and a worker that never becomes ready leaves its session queued rather than failing it.

Every session runs on a slot of a pool worker (here a pool that gives each session a cold worker
of its own): a worker deleted or finished fails its sessions `worker_lost`, its node deleted
fails them `node_lost`, a worker that reports no first frame fails them `start_timeout`. A
session is bound only to a ready worker, so a worker stuck before ready (its image never pulls,
no node fits it) costs the session nothing but waiting: it starts once a ready worker comes.
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from testbed.controlplane import NEVER_PULLS_IMAGE
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import POOL, one_worker_per_session
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

WORKER_IMAGE = "facecast/worker:test"


def running(sessions: Sessions, api_client: k8s.ApiClient) -> tuple[str, k8s.V1Pod]:
    sessions.create_tenant()
    name = sessions.create()
    pod = sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")
    return name, pod


@pytest.mark.usefixtures("worker_per_session")
def test_worker_pod_deleted_by_hand(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    name, pod = running(sessions, api_client)
    assert pod.metadata is not None
    assert pod.metadata.name is not None
    sessions.core.delete_namespaced_pod(pod.metadata.name, sessions.namespace)
    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason == "worker_lost"
    assert failed.status.message == f"worker {pod.metadata.name} is gone"


@pytest.mark.usefixtures("worker_per_session")
def test_node_deleted(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    name, pod = running(sessions, api_client)
    assert pod.spec is not None
    assert pod.spec.node_name is not None
    sessions.core.delete_node(pod.spec.node_name)
    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason in ("node_lost", "worker_lost")
    assert failed.status.reason == "node_lost", failed.status.message
    assert failed.status.message == f"node {pod.spec.node_name} is gone"


@pytest.mark.usefixtures("worker_per_session")
def test_worker_reports_a_bad_token(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).give_up(
        "transport_auth_failed", "LiveKit refused the token"
    )
    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason == "transport_auth_failed"
    assert failed.status.message == "LiveKit refused the token"


@pytest.mark.usefixtures("worker_per_session")
@pytest.mark.parametrize(
    "operator_env",
    [{"FACECAST_START_TIMEOUT_SECONDS": "4"}],
)
def test_worker_that_never_reports_a_frame_times_out(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory
) -> None:
    """The worker is ready and the session bound to it, but it never publishes a frame: the
    start deadline, counted from the binding, fails it."""
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    starting = sessions.wait_phase(name, "starting")
    failed = sessions.wait_phase(name, "failed", timeout=30)
    assert failed.status.reason == "start_timeout"
    assert failed.status.message == f"no first frame in time from worker {starting.status.pod_name}"
    # Events are posted after the status write: wait for the last one.
    wait_for(lambda: sessions.event_reasons(name)[-1:] == ["Failed"], timeout=15,
             description="the Failed Event, last")  # fmt: skip


def pool_pods(sessions: Sessions) -> list[k8s.V1Pod]:
    listed = sessions.core.list_namespaced_pod(
        sessions.namespace, label_selector=contract.pool_selector(POOL)
    )
    return [p for p in listed.items if p.metadata and not p.metadata.deletion_timestamp]


def pull_failing(pod: k8s.V1Pod) -> bool:
    statuses = (pod.status.container_statuses if pod.status else None) or []
    return any(s.state and s.state.waiting and s.state.waiting.reason == "ErrImagePull"
               for s in statuses)  # fmt: skip


def unschedulable(pod: k8s.V1Pod) -> bool:
    conditions = (pod.status.conditions if pod.status else None) or []
    return any(
        c.type == "PodScheduled" and c.status == "False" and c.reason == "Unschedulable"
        for c in conditions
    )


# Each stuck worker: (the pool's worker template, what is stuck about its pod, the repair).
STUCK: dict[str, tuple[dict[str, Any], Any, dict[str, Any]]] = {
    # kwok holds the pod in ErrImagePull, as a kubelet would for an unpullable image.
    "image_never_pulls": (
        {"image": NEVER_PULLS_IMAGE, "gpus": 1},
        pull_failing,
        {"image": WORKER_IMAGE},
    ),
    # A GPU is free, but the worker asks for more CPU than any node has.
    "no_node_fits": (
        {"image": WORKER_IMAGE, "gpus": 1, "resources": {"requests": {"cpu": "64"}}},
        unschedulable,
        {"resources": {"requests": {"cpu": "100m"}}},
    ),
}


@pytest.mark.parametrize("stuck", list(STUCK))
@pytest.mark.parametrize(
    "operator_env",
    [{"FACECAST_START_TIMEOUT_SECONDS": "4"}],
)
def test_a_worker_that_never_becomes_ready_leaves_the_session_queued(
    stuck: str, operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    """No slot is offered on a worker that is not ready: the session is not bound to it (so
    no start deadline runs against it) and waits, and starts once a ready worker is there."""
    template, is_stuck, repair = STUCK[stuck]
    gpu_nodes(2)
    one_worker_per_session(api_client, sessions.namespace, worker=template)
    sessions.create_tenant()
    name = sessions.create(idleTimeoutSeconds=None)

    def stuck_worker() -> k8s.V1Pod | None:
        return next((p for p in pool_pods(sessions) if is_stuck(p)), None)

    broken = wait_for(stuck_worker, timeout=30, description=f"the session's worker stuck: {stuck}")
    sessions.assert_left_queued(name)

    # Repair the pool, then replace its stuck workers: the session starts on a ready one.
    custom = k8s.CustomObjectsApi(api_client)
    pool = (GROUP, VERSION, sessions.namespace, WORKER_POOL.plural, POOL)
    patch = {"spec": {"worker": repair}}
    repaired = cast(dict[str, Any], custom.patch_namespaced_custom_object(*pool, patch))
    generation = repaired["metadata"]["generation"]

    def pool_observed() -> bool:
        body = cast(dict[str, Any], custom.get_namespaced_custom_object(*pool))
        return bool((body.get("status") or {}).get("observedGeneration") == generation)

    wait_for(pool_observed, timeout=30, description="the operator read the repaired pool")
    for pod in pool_pods(sessions):
        assert pod.metadata is not None
        assert pod.metadata.name is not None
        sessions.core.delete_namespaced_pod(
            pod.metadata.name, sessions.namespace, grace_period_seconds=0
        )
    started = sessions.wait_phase(name, "starting", timeout=60)
    assert started.status.binding is not None
    assert broken.metadata is not None
    assert started.status.binding.pod != broken.metadata.name
    assert "Failed" not in sessions.event_reasons(name)
    sessions.wait_pod_running(name)
