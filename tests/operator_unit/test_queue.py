"""Reading the queue and free capacity from raw watch bodies."""

from __future__ import annotations

from typing import Any

from avatar_crds import contract
from avatar_operator.queue import capacity, queue, waiting_sessions


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


def node(name: str, gpus: int, ready: bool = True, unschedulable: bool = False) -> dict[str, Any]:
    return {
        "metadata": {"name": name},
        "spec": {"unschedulable": unschedulable},
        "status": {
            "allocatable": {"nvidia.com/gpu": str(gpus)},
            "conditions": [{"type": "Ready", "status": "True" if ready else "False"}],
        },
    }


def worker(session_name: str, phase: str = "Running") -> dict[str, Any]:
    return {
        "metadata": {"name": f"{session_name}-worker", "namespace": "fc",
                     "labels": {contract.LABEL_SESSION: session_name}},
        "spec": {"containers": [{"resources": {"limits": {"nvidia.com/gpu": "1"}}}]},
        "status": {"phase": phase},
    }  # fmt: skip


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
        tenant_limits={"acme": 5},
        reserved={("fc", "q")},
        gpu_resource="nvidia.com/gpu",
        gpus_per_session=1,
    )
    # 4 ready GPUs - 1 live pod (the failed one frees its GPU) - 1 reservation without a pod
    assert cap.free_gpus == 2
    assert cap.active_by_tenant == {"acme": 3}
    assert cap.max_by_tenant == {"acme": 5}
