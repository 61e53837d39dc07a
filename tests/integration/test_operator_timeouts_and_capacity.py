"""Deadlines fire on time, and capacity is the pool's: a session waits, in FIFO order, while its
pool is at maxWorkers with every slot taken, and while the GPUs run out before maxWorkers (the
pool's worker for it cannot be scheduled, so it is never ready to take the session).

The deadline tests and the GPU test give each session a cold pool worker of its own (the
`worker_per_session` fixture); the maxWorkers test makes its own pool of two such workers."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.pool import WorkerPool
from avatar_crds.session import AvatarSession
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import POOL, create_pool
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn


def start_running(sessions: Sessions, api_client: k8s.ApiClient, **spec: Any) -> str:
    name = sessions.create(**spec)
    sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")
    return name


def lateness(sessions: Sessions, name: str, deadline: str) -> float:
    session = sessions.get(name)
    assert session is not None
    assert session.status.ending_at is not None
    assert session.status.deadlines is not None
    planned: datetime | None = getattr(session.status.deadlines, deadline)
    assert planned is not None
    return (session.status.ending_at - planned).total_seconds()


def end(sessions: Sessions, api_client: k8s.ApiClient, name: str) -> AvatarSession:
    """Ask the running session to end and play its worker leaving the room; the ended session.
    A heartbeat first: a slow machine may have taken the heartbeat timeout since its start."""
    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.heartbeat()
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "ending")
    worker.left()
    return sessions.wait_phase(name, "ended")


def pool_pods(api_client: k8s.ApiClient, namespace: str) -> list[Any]:
    """The pool's worker pods not being deleted, ready or not (client models, typed loosely)."""
    pods: Any = k8s.CoreV1Api(api_client).list_namespaced_pod(
        namespace, label_selector=contract.pool_selector(POOL)
    )
    return [pod for pod in pods.items if pod.metadata.deletion_timestamp is None]


def binding_pod(session: AvatarSession) -> str:
    assert session.status.binding is not None
    return session.status.binding.pod


@pytest.mark.usefixtures("worker_per_session")
def test_idle_timeout_ends_the_session_on_time(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = start_running(sessions, api_client, idleTimeoutSeconds=2)
    sessions.wait_phase(name, "ending", timeout=30)
    WorkerStandIn(api_client, sessions.namespace, name).left()
    ended = sessions.wait_phase(name, "ended")
    assert ended.status.reason == "idle_timeout"
    late = lateness(sessions, name, "idle_at")
    print(f"\nidle timeout: ended {late:.3f} s after the deadline")
    assert 0 <= late < 2.0


@pytest.mark.usefixtures("worker_per_session")
def test_max_duration_ends_the_session_on_time(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = start_running(sessions, api_client, idleTimeoutSeconds=None, maxDurationSeconds=3)
    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.heartbeat()
    sessions.wait_phase(name, "ending", timeout=30)
    worker.left()
    ended = sessions.wait_phase(name, "ended")
    assert ended.status.reason == "max_duration_reached"
    late = lateness(sessions, name, "max_duration_at")
    print(f"\nmax duration: ended {late:.3f} s after the deadline")
    assert 0 <= late < 2.0


def test_a_pool_at_max_workers_queues_sessions_in_fifo_order(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    """GPUs for three workers, but the pool may have two: the third and fourth sessions wait,
    no third worker is made, and the slot the first frees goes to the third, not the fourth."""
    gpu_nodes(3)
    namespace = sessions.namespace
    create_pool(api_client, namespace, slotsPerWorker=1, minWorkers=0, maxWorkers=2)
    sessions.create_tenant()
    first = start_running(sessions, api_client, idleTimeoutSeconds=None)
    start_running(sessions, api_client, idleTimeoutSeconds=None)
    third = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(third, "queued")
    fourth = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(fourth, "queued")

    # Give the pool every chance to get it wrong: it has seen both queued sessions.
    def limited() -> bool:
        body = k8s.CustomObjectsApi(api_client).get_namespaced_custom_object(
            GROUP, VERSION, namespace, WORKER_POOL.plural, POOL
        )
        pool = WorkerPool.model_validate(body)
        return any(
            c.type == "ScalingLimited"
            and c.status == "True"
            and "2 sessions queued" in (c.message or "")
            for c in pool.status.conditions
        )

    wait_for(limited, timeout=30, description="the pool at maxWorkers with 2 sessions queued")
    assert len(pool_pods(api_client, namespace)) == 2
    for waiting in (third, fourth):
        queued = sessions.get(waiting)
        assert queued is not None
        assert queued.status.phase == "queued"
        assert queued.status.binding is None

    first_worker = binding_pod(end(sessions, api_client, first))
    # The oldest waiting session takes the freed slot, on the same (warm) worker.
    assert binding_pod(sessions.wait_phase(third, "starting", timeout=30)) == first_worker
    later = sessions.get(fourth)
    assert later is not None
    assert later.status.phase == "queued"
    assert len(pool_pods(api_client, namespace)) == 2
    sessions.wait_pod_running(third)


@pytest.mark.usefixtures("worker_per_session")
def test_a_session_waits_for_a_gpu_for_its_worker(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    """Two GPU nodes, a pool that may grow to twenty workers: the third session's worker is
    made but cannot be scheduled, and the session waits until the first one's GPU is free."""
    gpu_nodes(2)
    namespace = sessions.namespace
    sessions.create_tenant()
    first = start_running(sessions, api_client, idleTimeoutSeconds=None)
    start_running(sessions, api_client, idleTimeoutSeconds=None)
    third = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(third, "queued")

    def unschedulable() -> list[str]:
        return [
            pod.metadata.name
            for pod in pool_pods(api_client, namespace)
            if any(
                c.type == "PodScheduled" and c.reason == "Unschedulable"
                for c in pod.status.conditions or []
            )
        ]

    # Give admission every chance to get it wrong: the third worker exists, with no GPU.
    wait_for(unschedulable, timeout=30, description="the third worker unschedulable")
    queued = sessions.get(third)
    assert queued is not None
    assert queued.status.phase == "queued"
    assert sessions.pod(third) is None

    end(sessions, api_client, first)
    sessions.wait_phase(third, "starting", timeout=30)
    sessions.wait_pod_running(third)
