"""Reading the queue and free capacity from raw watch bodies."""

from __future__ import annotations

from collections.abc import Sequence, Set
from typing import Any

import pytest

from avatar_crds import contract
from avatar_operator.capacity import BoundGpus, Placement, free_gpus, tolerates, worker_fits
from avatar_operator.capacity_readings import capacity, queue, waiting_sessions

GPU = "nvidia.com/gpu"
HARD = "NoSchedule"
GPU_TAINT = {"key": GPU, "value": "present", "effect": HARD}
DEFAULT_PLACEMENT = Placement(
    node_selector={}, tolerations=[{"key": GPU, "operator": "Exists", "effect": "NoSchedule"}]
)


def session(
    name: str, phase: str | None = None, tenant: str = "acme", **meta: Any
) -> dict[str, Any]:
    status = {"phase": phase} if phase else {}
    return {
        "metadata": {"name": name, "namespace": "fc",
                     "creationTimestamp": f"2026-11-21T10:00:0{len(name) % 10}Z", **meta},
        "spec": {"tenant": tenant},
        "status": status,
    }  # fmt: skip


def node(
    name: str,
    gpus: int,
    ready: bool = True,
    unschedulable: bool = False,
    labels: dict[str, str] | None = None,
    taints: list[dict[str, str]] | None = None,
) -> dict[str, Any]:
    return {
        "metadata": {"name": name, "labels": labels or {}},
        "spec": {
            "unschedulable": unschedulable,
            "taints": [GPU_TAINT] if taints is None else taints,
        },
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def worker(session_name: str, phase: str = "Running", node_name: str = "n1") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{session_name}-worker", "namespace": "fc",
                     "labels": {contract.LABEL_SESSION: session_name}},
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}],
                 "nodeName": node_name},
        "status": {"phase": phase},
    }  # fmt: skip


def free_for(nodes: list[dict[str, Any]], *, placement: Placement = DEFAULT_PLACEMENT,
             held: dict[tuple[str, str], BoundGpus] | None = None,
             pods: Sequence[dict[str, Any]] = (),
             reserved: Set[tuple[str, str]] = frozenset()) -> int:  # fmt: skip
    return capacity(
        sessions=[],
        pods=list(pods),
        nodes=nodes,
        cluster_gpus={} if held is None else held,
        placement=placement,
        tenant_limits={},
        reserved=reserved,
        gpu_resource=GPU,
        gpus_per_session=1,
    ).free_gpus


def test_waiting_excludes_admitted_deleting_and_active_sessions() -> None:
    bodies = [
        session("a"),
        session("b", "queued"),
        session("c", "running"),
        session("d", "queued", deletionTimestamp="2026-11-21T10:00:00Z"),
        session("e", "queued"),
    ]
    waiting = waiting_sessions(bodies, reserved={("fc", "e")})
    assert [b["metadata"]["name"] for b in waiting] == ["a", "b"]
    assert [w.name for w in queue(waiting)] == ["a", "b"]


def test_capacity_counts_ready_gpus_minus_live_pods_and_reservations() -> None:
    sessions = [session("r1", "running"), session("r2", "running"), session("q", "queued")]
    cap = capacity(
        sessions=sessions,
        pods=[worker("r1"), worker("r2", phase="Failed")],
        nodes=[node("n1", 4), node("n2", 8, ready=False), node("n3", 8, unschedulable=True)],
        cluster_gpus={},
        placement=DEFAULT_PLACEMENT,
        tenant_limits={"acme": 5},
        reserved={("fc", "q")},
        gpu_resource="nvidia.com/gpu",
        gpus_per_session=1,
    )
    # 4 ready GPUs - 1 live pod (the failed one frees its GPU) - 1 reservation without a pod
    assert cap.free_gpus == 2
    assert cap.held_by_tenant == {"acme": 3}
    assert cap.max_by_tenant == {"acme": 5}


def test_gpus_on_nodes_the_worker_does_not_fit_are_not_free() -> None:
    placement = Placement(
        node_selector={"pool": "avatars"}, tolerations=DEFAULT_PLACEMENT.tolerations
    )
    other_taint = {"key": "dedicated", "value": "training", "effect": "NoSchedule"}
    nodes = [
        node("fits", 1, labels={"pool": "avatars"}),
        node("unlabelled", 4),
        node("wrong-pool", 4, labels={"pool": "training"}),
        node("tainted", 4, labels={"pool": "avatars"}, taints=[GPU_TAINT, other_taint]),
        node("cordoned", 4, labels={"pool": "avatars"}, unschedulable=True),
        node("not-ready", 4, labels={"pool": "avatars"}, ready=False),
    ]
    assert free_for(nodes, placement=placement) == 1


def test_gpus_held_by_other_pods_are_not_free_on_their_node_only() -> None:
    nodes = [node("a", 2), node("b", 1)]
    held = {
        ("ml", "training"): BoundGpus(node="a", gpus=2),
        ("ml", "elsewhere"): BoundGpus(node="gone", gpus=4),  # on a node not counted: no effect
    }
    assert free_for(nodes, held=held) == 1


def test_a_node_overcommitted_by_other_pods_does_not_eat_another_nodes_gpus() -> None:
    held = {("ml", "big"): BoundGpus(node="a", gpus=3)}
    assert free_for([node("a", 1), node("b", 1)], held=held) == 1


def test_our_workers_count_once_even_when_the_cluster_watch_sees_them_too() -> None:
    pod = worker("r1", node_name="a")
    held = {("fc", "r1-worker"): BoundGpus(node="a", gpus=1)}
    assert free_for([node("a", 2)], held=held, pods=[pod]) == 1
    # Finished per our own watch: free, even while the cluster watch still lists it.
    assert free_for([node("a", 2)], held=held, pods=[worker("r1", "Succeeded", "a")]) == 2


def test_unbound_workers_and_reservations_take_from_the_total() -> None:
    pending = worker("p", node_name="")
    assert free_for([node("a", 2), node("b", 1)], pods=[pending], reserved={("fc", "q")}) == 1


def test_nothing_is_free_until_the_cluster_pods_are_known() -> None:
    cap = capacity(
        sessions=[], pods=[], nodes=[node("a", 4)], cluster_gpus=None,
        placement=DEFAULT_PLACEMENT, tenant_limits={}, reserved=set(),
        gpu_resource=GPU, gpus_per_session=1,
    )  # fmt: skip
    assert cap.free_gpus == 0


@pytest.mark.parametrize(
    ("toleration", "taint", "expected"),
    [
        ({"key": "k", "operator": "Exists"}, {"key": "k", "value": "v", "effect": HARD}, True),
        ({"operator": "Exists"}, {"key": "any", "effect": "NoExecute"}, True),
        ({"key": "k", "value": "v"}, {"key": "k", "value": "v", "effect": HARD}, True),
        ({"key": "k", "operator": "Equal", "value": "x"}, {"key": "k", "value": "v"}, False),
        ({"key": "k", "operator": "Exists", "effect": "NoExecute"}, {"key": "k", "effect": HARD},
         False),
        ({"key": "other", "operator": "Exists"}, {"key": "k", "effect": HARD}, False),
    ],
)  # fmt: skip
def test_toleration_matching_follows_kubernetes(
    toleration: dict[str, str], taint: dict[str, str], expected: bool
) -> None:
    assert tolerates(toleration, taint) is expected


def test_prefer_no_schedule_taints_do_not_keep_the_worker_off() -> None:
    soft = {"key": "spot", "value": "true", "effect": "PreferNoSchedule"}
    assert worker_fits(node("a", 1, taints=[GPU_TAINT, soft]), DEFAULT_PLACEMENT)
    assert not worker_fits(node("a", 1), Placement(node_selector={}, tolerations=[]))
    assert free_gpus([node("a", 1, taints=[soft])], [], Placement({}, []), GPU) == 1
