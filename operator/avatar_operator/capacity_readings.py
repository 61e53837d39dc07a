"""Pure readings of what the watches have seen: who is waiting, which slots are taken and how
many slots each tenant holds (the inputs of `pool_assignment.assign`, and the counts `billing`
writes).
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from avatar_crds.enums import Quality
from avatar_crds.phases import (
    body_holds_slot,
    body_is_being_deleted,
    body_phase,
    holds_slot,
    is_waiting,
)
from avatar_crds.session import Binding
from avatar_operator.observe import Key, session_key
from avatar_operator.pool_assignment import QueuedSession
from avatar_operator.pool_readings import held_slot


@dataclass
class NamespaceQueue:
    """What one pass over a namespace's sessions tells the admission pass."""

    waiting: list[dict[str, Any]] = field(default_factory=list)
    """Created or queued, not being deleted, with no slot chosen for them yet."""
    taken: dict[str, set[int]] = field(default_factory=dict)
    """Per worker pod, the slots its sessions hold and those chosen in memory."""
    held_by_tenant: dict[str, int] = field(default_factory=dict)
    """Per tenant, its slots (`avatar_crds.phases.holds_slot`) held by sessions not `waiting`."""
    tenants: set[str] = field(default_factory=set)
    """Every tenant with a session in the namespace: whose limits the pass reads."""


def read_queues(
    sessions: Iterable[dict[str, Any]], chosen: Mapping[Key, Binding]
) -> dict[str, NamespaceQueue]:
    """Per namespace, the admission pass's inputs, in one pass over every session (it runs
    after each burst of changes, over thousands of sessions). `chosen`: slots picked in memory
    for sessions whose status does not record them yet; they hold their slot and tenant slot."""
    queues: dict[str, NamespaceQueue] = {}
    for body in sessions:
        key = session_key(body)
        queue = queues.get(key[0])
        if queue is None:
            queue = queues[key[0]] = NamespaceQueue()
        tenant = body["spec"]["tenant"]
        queue.tenants.add(tenant)
        deleting = body_is_being_deleted(body)
        phase = body_phase(body)
        if is_waiting(phase, deleting=deleting) and key not in chosen:
            queue.waiting.append(body)
            continue
        if holds_slot(phase, deleting=deleting):
            queue.held_by_tenant[tenant] = queue.held_by_tenant.get(tenant, 0) + 1
        held = held_slot(body)
        if held is not None:
            queue.taken.setdefault(held.pod, set()).add(held.slot)
    for (namespace, _), binding in chosen.items():
        if namespace in queues:
            queues[namespace].taken.setdefault(binding.pod, set()).add(binding.slot)
    return queues


def held_slots(
    sessions: Iterable[dict[str, Any]],
) -> dict[str, int]:
    """Per tenant, the sessions holding one of its slots (`avatar_crds.phases`)."""
    held: dict[str, int] = {}
    for body in sessions:
        if body_holds_slot(body):
            tenant = body["spec"]["tenant"]
            held[tenant] = held.get(tenant, 0) + 1
    return held


def queued_session(body: dict[str, Any]) -> QueuedSession:
    """A waiting session as `pool_assignment.assign` orders it.

    FIFO by creation: the API server's second, then the name (`sess-<ULID>`, whose time is in
    milliseconds). Not `queuedAt`: a session the operator had not yet written `queued` for (a
    restart) would sort by another clock than the rest."""
    meta, spec = body["metadata"], body["spec"]
    return _queued(meta["name"], spec["tenant"], spec["quality"], meta["creationTimestamp"])


@functools.lru_cache(maxsize=16384)
def _queued(name: str, tenant: str, quality: str, created: str) -> QueuedSession:
    # Cached: every admission pass reads every waiting session, and parsing their times anew
    # each time was 4 % of the event loop while binding a burst. Keyed by all it reads.
    return QueuedSession(
        name=name,
        tenant=tenant,
        quality=Quality(quality),
        created_at=datetime.fromisoformat(created),
    )
