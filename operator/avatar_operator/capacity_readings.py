"""Pure readings of what the watches have seen: who is waiting, how much room there is, and
how many slots each tenant holds.

Turns raw session, pod, node and tenant bodies into the inputs of `admission.admit` (and the
tenant counts `billing` writes). Which nodes a worker fits, and their free GPUs, are
`capacity.py`'s.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Set
from datetime import datetime
from typing import Any

from avatar_crds import contract
from avatar_crds.phases import body_holds_slot, body_is_being_deleted, body_phase, is_waiting
from avatar_operator.admission import Capacity, Waiting
from avatar_operator.capacity import BoundGpus, Placement, bound_gpus, free_gpus
from avatar_operator.observe import Key, session_key


def waiting_sessions(
    sessions: Iterable[dict[str, Any]], reserved: Set[Key]
) -> list[dict[str, Any]]:
    """Queued (or not yet queued) sessions that are not being deleted or already admitted."""
    return [
        body
        for body in sessions
        if is_waiting(body_phase(body), deleting=body_is_being_deleted(body))
        and session_key(body) not in reserved
    ]


def queue(bodies: Iterable[dict[str, Any]]) -> list[Waiting]:
    return [
        Waiting(name=b["metadata"]["name"], tenant=b["spec"]["tenant"], queued_at=queued_at(b))
        for b in bodies
    ]


def capacity(
    *,
    sessions: list[dict[str, Any]],
    pods: Iterable[dict[str, Any]],
    nodes: Iterable[dict[str, Any]],
    cluster_gpus: Mapping[Key, BoundGpus] | None,
    placement: Placement,
    tenant_limits: dict[str, int],
    reserved: Set[Key],
    gpu_resource: str,
    gpus_per_session: int,
) -> Capacity:
    """Free GPUs on the nodes a worker fits, minus those held there by any pod (ours from
    `pods`, everyone's from `cluster_gpus`; None until that is known: then nothing is free)
    and by sessions admitted a moment ago whose pod the watch has not shown yet."""
    held = dict(cluster_gpus or {})
    with_pods: set[Key] = set()
    for pod in pods:
        key = (pod["metadata"]["namespace"], pod["metadata"]["name"])
        holds = bound_gpus(pod, gpu_resource)
        if holds is None:
            held.pop(key, None)  # finished: its GPU is free whatever a lagging watch says
            continue
        held[key] = holds
        with_pods.add((key[0], _session_label(pod)))
    unseen = [BoundGpus(node=None, gpus=gpus_per_session)] * len(set(reserved) - with_pods)
    free = free_gpus(nodes, [*held.values(), *unseen], placement, gpu_resource)
    queued = {session_key(body) for body in waiting_sessions(sessions, reserved)}
    return Capacity(
        free_gpus=free if cluster_gpus is not None else 0,
        gpus_per_session=gpus_per_session,  # 0 on CPU-only clusters: tenants limit alone
        held_by_tenant=held_slots(sessions, excluding=queued),
        max_by_tenant=tenant_limits,
    )


def held_slots(
    sessions: Iterable[dict[str, Any]], *, excluding: Set[Key] = frozenset()
) -> dict[str, int]:
    """Per tenant, the sessions holding one of its slots (`avatar_crds.phases`), but `excluding`."""
    held: dict[str, int] = {}
    for body in sessions:
        if body_holds_slot(body) and session_key(body) not in excluding:
            tenant = body["spec"]["tenant"]
            held[tenant] = held.get(tenant, 0) + 1
    return held


def queued_at(body: dict[str, Any]) -> datetime:
    """When the session joined the queue (its creation, until the operator recorded it)."""
    stamp = (body.get("status") or {}).get("queuedAt") or body["metadata"]["creationTimestamp"]
    return datetime.fromisoformat(stamp)


def _session_label(pod: dict[str, Any]) -> str:
    return str((pod["metadata"].get("labels") or {}).get(contract.LABEL_SESSION, ""))
