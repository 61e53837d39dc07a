"""Pure readers that turn raw Kubernetes objects into the few facts the machine needs."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from avatar_crds.session import AvatarSession

Key = tuple[str, str]
"""(namespace, name): a session's, or a pod's, in the watches' indexes and the work queue."""


def session_key(body: dict[str, Any]) -> Key:
    """The key of a raw session body, as the watches hold it."""
    return body["metadata"]["namespace"], body["metadata"]["name"]


def key_of(session: AvatarSession) -> Key:
    return session.metadata.namespace or "", session.metadata.name or ""


@dataclass(frozen=True)
class PodFacts:
    name: str
    uid: str
    phase: str
    node_name: str | None
    deleting: bool
    unschedulable: str | None
    """The scheduler's message while the pod is unschedulable."""
    waiting_reason: str | None
    """Why the worker container is not running yet (ErrImagePull, ...)."""
    exit_message: str | None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


@dataclass(frozen=True)
class NodeFacts:
    name: str
    gpus: int
    ready: bool
    schedulable: bool


def pod_facts(pod: dict[str, Any]) -> PodFacts:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
    unschedulable = None
    for condition in status.get("conditions") or []:
        if (
            condition.get("type") == "PodScheduled"
            and condition.get("status") == "False"
            and condition.get("reason") == "Unschedulable"
        ):
            unschedulable = condition.get("message") or "unschedulable"
    waiting_reason = exit_message = None
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "waiting" in state:
            waiting_reason = (state["waiting"] or {}).get("reason")
        if "terminated" in state:
            terminated = state["terminated"] or {}
            exit_message = terminated.get("message") or terminated.get("reason")
    return PodFacts(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        node_name=spec.get("nodeName"),
        deleting=bool(meta.get("deletionTimestamp")),
        unschedulable=unschedulable,
        waiting_reason=waiting_reason,
        exit_message=exit_message,
    )


def node_facts(node: dict[str, Any], gpu_resource: str) -> NodeFacts:
    status = node.get("status") or {}
    allocatable = status.get("allocatable") or {}
    ready = any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in status.get("conditions") or []
    )
    return NodeFacts(
        name=node.get("metadata", {}).get("name", ""),
        gpus=_quantity(allocatable.get(gpu_resource, "0")),
        ready=ready,
        schedulable=not (node.get("spec") or {}).get("unschedulable", False),
    )


def pod_gpu_request(pod: dict[str, Any], gpu_resource: str) -> int:
    total = 0
    for container in (pod.get("spec") or {}).get("containers") or []:
        resources = container.get("resources") or {}
        limits = resources.get("limits") or resources.get("requests") or {}
        total += _quantity(limits.get(gpu_resource, "0"))
    return total


def _quantity(value: Any) -> int:
    """Extended resources such as GPUs are whole numbers."""
    try:
        return int(str(value))
    except ValueError:
        return 0
