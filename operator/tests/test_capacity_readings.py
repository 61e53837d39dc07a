"""Reading the queue from raw watch bodies in one pass: who waits in each namespace, which
slots are taken, how many slots each tenant holds, and in which order sessions are bound."""

from __future__ import annotations

from typing import Any

from avatar_crds.enums import Quality
from avatar_crds.session import Binding
from avatar_operator.capacity_readings import held_slots, queued_session, read_queues


def session(
    name: str, phase: str | None = None, tenant: str = "acme", namespace: str = "fc", **meta: Any
) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase} if phase else {}
    return {
        "metadata": {"name": name, "namespace": namespace,
                     "creationTimestamp": f"2026-11-21T10:00:0{len(name) % 10}Z", **meta},
        "spec": {"tenant": tenant, "quality": "lite"},
        "status": status,
    }  # fmt: skip


def bound(name: str, phase: str, pod: str, slot: int, **changes: Any) -> dict[str, Any]:
    body = session(name, phase, **changes)
    body["status"]["binding"] = {"pool": "lite", "pod": pod, "slot": slot}
    return body


BODIES = [
    session("a"),
    session("b", "queued"),
    bound("c", "running", "w1", 0),
    session("d", "queued", deletionTimestamp="2026-11-21T10:00:00Z"),
    session("e", "queued"),
    bound("f", "ended", "w1", 1),
    bound("g", "starting", "w2", 3, tenant="other"),
    session("h", "queued", namespace="elsewhere"),
]
CHOSEN = {("fc", "e"): Binding(pool="lite", pod="w2", slot=0)}


def test_waiting_excludes_chosen_deleting_and_active_sessions_per_namespace() -> None:
    queues = read_queues(BODIES, CHOSEN)
    assert [b["metadata"]["name"] for b in queues["fc"].waiting] == ["a", "b"]
    assert [b["metadata"]["name"] for b in queues["elsewhere"].waiting] == ["h"]


def test_slots_held_by_bound_sessions_and_chosen_ones_are_taken() -> None:
    queues = read_queues(BODIES, CHOSEN)
    assert queues["fc"].taken == {"w1": {0}, "w2": {0, 3}}  # f ended: its slot is free
    assert queues["elsewhere"].taken == {}


def test_tenant_slots_count_holders_that_do_not_wait_chosen_ones_included() -> None:
    queues = read_queues(BODIES, CHOSEN)
    assert queues["fc"].held_by_tenant == {"acme": 2, "other": 1}  # c, and e (chosen)
    assert queues["fc"].tenants == {"acme", "other"}
    assert held_slots(BODIES) == {"acme": 5, "other": 1}


def test_a_queued_session_is_ordered_by_its_creation_not_its_queued_time() -> None:
    body = session("bb", "queued")
    body["status"]["queuedAt"] = "2026-11-21T11:00:00Z"
    queued = queued_session(body)
    assert (queued.name, queued.tenant, queued.quality) == ("bb", "acme", Quality.LITE)
    assert queued.created_at.isoformat() == "2026-11-21T10:00:02+00:00"
