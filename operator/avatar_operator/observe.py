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
    exit_message: str | None

    @property
    def finished(self) -> bool:
        return self.phase in ("Succeeded", "Failed")


def pod_facts(pod: dict[str, Any]) -> PodFacts:
    meta, spec, status = pod.get("metadata", {}), pod.get("spec", {}), pod.get("status") or {}
    exit_message = None
    for container in status.get("containerStatuses") or []:
        state = container.get("state") or {}
        if "terminated" in state:
            terminated = state["terminated"] or {}
            exit_message = terminated.get("message") or terminated.get("reason")
    return PodFacts(
        name=meta.get("name", ""),
        uid=meta.get("uid", ""),
        phase=status.get("phase") or "Pending",
        node_name=spec.get("nodeName"),
        deleting=bool(meta.get("deletionTimestamp")),
        exit_message=exit_message,
    )
