"""Pure: how many GPUs a worker pod could be scheduled onto right now.

A GPU counts only on a node the scheduler would place a worker on (its labels match the
worker's nodeSelector, every NoSchedule/NoExecute taint is tolerated, it is Ready and not
cordoned) and only if no other running or pending pod bound to that node requests it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from avatar_operator.observe import node_facts, pod_facts, pod_gpu_request

# PreferNoSchedule only steers the scheduler; these two keep an untolerating pod off.
_REPELLING_EFFECTS = frozenset({"NoSchedule", "NoExecute"})


@dataclass(frozen=True)
class Placement:
    """Where the worker pod may go: the nodeSelector and tolerations it is created with."""

    node_selector: Mapping[str, str]
    tolerations: Sequence[Mapping[str, Any]]


@dataclass(frozen=True)
class BoundGpus:
    """GPUs one unfinished pod holds, and the node it is bound to (None: not scheduled yet)."""

    node: str | None
    gpus: int


def tolerates(toleration: Mapping[str, Any], taint: Mapping[str, Any]) -> bool:
    """Kubernetes' matching rule: an empty effect matches every effect, `Exists` with an empty
    key matches every taint, `Equal` (the default operator) also compares the value."""
    effect = toleration.get("effect") or ""
    if effect and effect != taint.get("effect"):
        return False
    key = toleration.get("key") or ""
    if toleration.get("operator") == "Exists":
        return not key or key == taint.get("key")
    return key == taint.get("key") and (toleration.get("value") or "") == (taint.get("value") or "")


def worker_fits(node: Mapping[str, Any], placement: Placement) -> bool:
    """Would the scheduler place a worker on this node (GPUs aside)?"""
    labels = (node.get("metadata") or {}).get("labels") or {}
    if any(labels.get(key) != value for key, value in placement.node_selector.items()):
        return False
    for taint in (node.get("spec") or {}).get("taints") or []:
        if taint.get("effect") in _REPELLING_EFFECTS and not any(
            tolerates(toleration, taint) for toleration in placement.tolerations
        ):
            return False
    facts = node_facts(dict(node), "")
    return facts.ready and facts.schedulable


def bound_gpus(pod: Mapping[str, Any], gpu_resource: str) -> BoundGpus | None:
    """What a pod holds, or None if it holds no GPU (none requested, or it has finished)."""
    gpus = pod_gpu_request(dict(pod), gpu_resource)
    if gpus == 0 or pod_facts(dict(pod)).finished:
        return None
    return BoundGpus(node=(pod.get("spec") or {}).get("nodeName") or None, gpus=gpus)


def free_gpus(
    nodes: Iterable[Mapping[str, Any]],
    held: Iterable[BoundGpus],
    placement: Placement,
    gpu_resource: str,
) -> int:
    """GPUs left on the nodes a worker fits, after what bound pods (any owner) hold there.

    Pods not bound yet are counted against the total: they are ours (only our own unbound
    workers are passed in), and they will take a GPU on one of these nodes."""
    free_by_node: dict[str, int] = {}
    for node in nodes:
        facts = node_facts(dict(node), gpu_resource)
        if facts.gpus and worker_fits(node, placement):
            free_by_node[facts.name] = facts.gpus
    pending = 0
    for pod in held:
        if pod.node is None:
            pending += pod.gpus
        elif pod.node in free_by_node:
            free_by_node[pod.node] -= pod.gpus
    return max(0, sum(max(0, free) for free in free_by_node.values()) - pending)
