"""Sessions on warm pool workers: the real operator on the real control plane, with a
WorkerPool whose workers are kwok pods. A session is bound to a free slot with one status write
(no pod, ServiceAccount or Role of its own), its worker's grant lists it while it holds the slot,
the slot is free again once the worker has left, a lost worker fails its sessions `worker_lost`,
and an operator restart keeps every binding.

kwok pods run no process, so `WorkerStandIn` plays the worker's part in the session's status
(the worker itself is tested against LiveKit in worker_image/tests/test_pool_*.py).
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.session import Binding
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import POOL, create_pool, ready_workers
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

SLOTS = 2


@pytest.fixture
def pool(
    operator: OperatorProcess, api_client: k8s.ApiClient, namespace: str, gpu_nodes: GpuNodeFactory
) -> str:
    """One ready worker with two slots (minWorkers 1, no buffer beyond it)."""
    gpu_nodes(2)
    create_pool(api_client, namespace, slotsPerWorker=SLOTS, minWorkers=1, maxWorkers=2)
    wait_for(lambda: len(ready_workers(api_client, namespace)) == 1, timeout=60,
             description="the pool's first worker ready")  # fmt: skip
    return POOL


def granted(api_client: k8s.ApiClient, namespace: str, pod: str) -> set[str]:
    """The sessions the worker's grant (its Role) lets it read."""
    worker: Any = k8s.CoreV1Api(api_client).read_namespaced_pod(pod, namespace)
    role = k8s.RbacAuthorizationV1Api(api_client).read_namespaced_role(
        worker.spec.service_account_name, namespace
    )
    return {
        name
        for rule in role.rules or []
        if "avatarsessions" in (rule.resources or [])
        for name in rule.resource_names or []
    }


def per_session_objects(api_client: k8s.ApiClient, namespace: str, name: str) -> list[str]:
    selector = f"{contract.LABEL_SESSION}={name}"
    core = k8s.CoreV1Api(api_client)
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    found: list[Any] = [
        *core.list_namespaced_pod(namespace, label_selector=selector).items,
        *core.list_namespaced_service_account(namespace, label_selector=selector).items,
        *rbac.list_namespaced_role(namespace, label_selector=selector).items,
        *rbac.list_namespaced_role_binding(namespace, label_selector=selector).items,
    ]
    return [cast(str, obj.metadata.name) for obj in found]


def end(sessions: Sessions, name: str) -> None:
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())


def test_a_session_binds_to_a_warm_slot_with_nothing_of_its_own(
    pool: str, sessions: Sessions, api_client: k8s.ApiClient, namespace: str
) -> None:
    sessions.create_tenant()
    (worker_pod,) = ready_workers(api_client, namespace)
    name = sessions.create()
    starting = sessions.wait_phase(name, "starting")
    binding = starting.status.binding
    assert binding == Binding(pool=POOL, pod=worker_pod.metadata.name, slot=0)
    assert starting.status.pod_name == worker_pod.metadata.name
    assert per_session_objects(api_client, namespace, name) == []
    wait_for(lambda: name in granted(api_client, namespace, binding.pod), timeout=15,
             description="the worker's grant lists the session")  # fmt: skip

    worker = WorkerStandIn(api_client, namespace, name)
    worker.first_frame()
    sessions.wait_phase(name, "running")
    end(sessions, name)
    sessions.wait_phase(name, "ending")
    # The pool's pod is not the session's: ending it deletes nothing.
    assert [p.metadata.name for p in ready_workers(api_client, namespace)] == [binding.pod]
    worker.left()
    ended = sessions.wait_phase(name, "ended")
    assert ended.status.reason == "user_ended"
    wait_for(lambda: name not in granted(api_client, namespace, binding.pod), timeout=15,
             description="the grant revoked")  # fmt: skip

    # The slot is free again: the next session takes slot 0 of the same warm worker.
    after = sessions.create()
    assert sessions.wait_phase(after, "starting").status.binding == binding


def test_a_full_worker_queues_the_next_session_and_the_pool_grows(
    pool: str, sessions: Sessions, api_client: k8s.ApiClient, namespace: str
) -> None:
    sessions.create_tenant()
    first = [sessions.create() for _ in range(SLOTS)]
    slots = {binding_of_when_bound(sessions, name) for name in first}
    assert {slot for _, slot in slots} == set(range(SLOTS))
    assert len({pod for pod, _ in slots}) == 1
    third = sessions.create()
    bound = sessions.wait_phase(third, "starting", timeout=60)
    assert bound.status.binding is not None
    assert bound.status.binding.pod not in {pod for pod, _ in slots}  # a second worker


def binding_of_when_bound(sessions: Sessions, name: str) -> tuple[str, int]:
    binding = sessions.wait_phase(name, "starting").status.binding
    assert binding is not None
    return binding.pod, binding.slot


def test_a_lost_worker_fails_its_sessions_and_is_replaced(
    pool: str, sessions: Sessions, api_client: k8s.ApiClient, namespace: str
) -> None:
    sessions.create_tenant()
    names = [sessions.create() for _ in range(SLOTS)]
    pods = {binding_of_when_bound(sessions, name)[0] for name in names}
    (pod,) = pods
    k8s.CoreV1Api(api_client).delete_namespaced_pod(pod, namespace, grace_period_seconds=0)
    for name in names:
        failed = sessions.wait_phase(name, "failed")
        assert failed.status.reason == "worker_lost"

    def replaced() -> bool:
        names = [p.metadata.name for p in ready_workers(api_client, namespace)]
        return bool(names) and pod not in names

    wait_for(replaced, timeout=60, description="a new worker in its place")


def test_an_operator_restart_keeps_every_binding(
    pool: str,
    operator: OperatorProcess,
    sessions: Sessions,
    api_client: k8s.ApiClient,
    namespace: str,
) -> None:
    sessions.create_tenant()
    names = [sessions.create() for _ in range(SLOTS)]
    before = {name: binding_of_when_bound(sessions, name) for name in names}
    operator.stop()
    operator.start()
    queued = sessions.create()
    # The restarted operator reads the bindings back: the full worker takes no third session
    # (it goes to a second worker), and nobody is bound twice.
    bound = sessions.wait_phase(queued, "starting", timeout=60)
    assert bound.status.binding is not None
    assert (bound.status.binding.pod, bound.status.binding.slot) not in before.values()
    assert {name: binding_of_when_bound(sessions, name) for name in names} == before


def test_buffer_zero_and_one_slot_is_a_worker_per_session_on_demand(
    operator: OperatorProcess, sessions: Sessions, api_client: k8s.ApiClient, namespace: str,
    gpu_nodes: GpuNodeFactory,
) -> None:  # fmt: skip
    """Today's behaviour as a configuration of the same path: no warm worker, one made when a
    session queues, and gone again once the session is over."""
    gpu_nodes(1)
    create_pool(api_client, namespace, maxWorkers=1)
    sessions.create_tenant()
    assert ready_workers(api_client, namespace) == []
    name = sessions.create()
    started = sessions.wait_phase(name, "starting", timeout=60)
    assert started.status.binding is not None
    assert started.status.binding.slot == 0
    # It waited for its worker to be made (no slot was free when it arrived).
    assert started.status.queued_at is not None
    assert started.status.starting_at is not None
    assert started.status.queued_at < started.status.starting_at
    sessions.delete(name)
    wait_for(lambda: sessions.get(name) is None, timeout=30, description="the session gone")
    wait_for(lambda: ready_workers(api_client, namespace) == [], timeout=60,
             description="its worker removed once idle")  # fmt: skip
