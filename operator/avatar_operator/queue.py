"""Pure readings of what the watches have seen: who is waiting, and how much room there is.

Turns raw session, pod, node and tenant bodies into the inputs of `admission.admit`.
"""

from __future__ import annotations

from collections.abc import Iterable, Set
from datetime import datetime
from typing import Any

from avatar_crds import contract
from avatar_crds.enums import Phase
from avatar_operator.admission import Capacity, Waiting
from avatar_operator.observe import node_facts, pod_facts, pod_gpu_request

Key = tuple[str, str]
"""(namespace, session name)"""

ACTIVE = frozenset({Phase.STARTING, Phase.RUNNING, Phase.ENDING})


def session_key(body: dict[str, Any]) -> Key:
    return body["metadata"]["namespace"], body["metadata"]["name"]


def waiting_sessions(
    sessions: Iterable[dict[str, Any]], reserved: Set[Key]
) -> list[dict[str, Any]]:
    """Queued (or not yet queued) sessions that are not being deleted or already admitted."""
    return [
        body
        for body in sessions
        if (body.get("status") or {}).get("phase") in (None, Phase.QUEUED)
        and not body["metadata"].get("deletionTimestamp")
        and session_key(body) not in reserved
    ]


def queue(bodies: Iterable[dict[str, Any]]) -> list[Waiting]:
    return [
        Waiting(name=b["metadata"]["name"], tenant=b["spec"]["tenant"], queued_at=_queued_at(b))
        for b in bodies
    ]


def capacity(
    *,
    sessions: list[dict[str, Any]],
    pods: Iterable[dict[str, Any]],
    nodes: Iterable[dict[str, Any]],
    tenant_limits: dict[str, int],
    reserved: Set[Key],
    gpu_resource: str,
    gpus_per_session: int,
) -> Capacity:
    """Free GPUs on ready, schedulable nodes minus those held by live worker pods and by
    sessions admitted a moment ago whose pod the watch has not shown yet."""
    total = sum(
        facts.gpus
        for facts in (node_facts(node, gpu_resource) for node in nodes)
        if facts.ready and facts.schedulable
    )
    live = [pod for pod in pods if not pod_facts(pod).finished]
    with_pods = {(p["metadata"]["namespace"], _session_label(p)) for p in live}
    used = sum(pod_gpu_request(pod, gpu_resource) for pod in live)
    used += gpus_per_session * len(set(reserved) - with_pods)
    active: dict[str, int] = {}
    for body in sessions:
        phase = (body.get("status") or {}).get("phase")
        if phase in ACTIVE or session_key(body) in reserved:
            tenant = body["spec"]["tenant"]
            active[tenant] = active.get(tenant, 0) + 1
    return Capacity(
        free_gpus=max(0, total - used),
        gpus_per_session=gpus_per_session,  # 0 on CPU-only clusters: tenants limit alone
        active_by_tenant=active,
        max_by_tenant=tenant_limits,
    )


def _queued_at(body: dict[str, Any]) -> datetime:
    stamp = (body.get("status") or {}).get("queuedAt") or body["metadata"]["creationTimestamp"]
    return datetime.fromisoformat(stamp)


def _session_label(pod: dict[str, Any]) -> str:
    return str((pod["metadata"].get("labels") or {}).get(contract.LABEL_SESSION, ""))
