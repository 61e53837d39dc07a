"""Which queued sessions may start now: FIFO against free GPUs and each tenant's concurrency.

Pure. Strict FIFO for GPUs (a later session never jumps a waiting one because it fits better),
but a tenant at its own concurrency limit does not hold back other tenants.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime


@dataclass(frozen=True)
class Waiting:
    name: str
    tenant: str
    queued_at: datetime


@dataclass(frozen=True)
class Capacity:
    free_gpus: int
    gpus_per_session: int
    held_by_tenant: Mapping[str, int]
    """Tenant slots (`avatar_crds.phases.holds_slot`) held by sessions not in the queue, per
    tenant: those with a worker and those admitted a moment ago. A queued session holds a slot
    too, so it is admitted only while its tenant's holders ahead of it leave room: normally
    always, since the API refuses a create beyond the limit; across API replicas racing on
    creates, this is the final word."""
    max_by_tenant: Mapping[str, int]
    default_max: int = 1


def admit(queue: Iterable[Waiting], capacity: Capacity) -> list[str]:
    """Names to start now, oldest first."""
    free = capacity.free_gpus
    held = Counter(capacity.held_by_tenant)
    admitted: list[str] = []
    for session in sorted(queue, key=lambda s: (s.queued_at, s.name)):
        limit = capacity.max_by_tenant.get(session.tenant, capacity.default_max)
        if held[session.tenant] >= limit:
            continue
        if free < capacity.gpus_per_session:
            break
        free -= capacity.gpus_per_session
        held[session.tenant] += 1
        admitted.append(session.name)
    return admitted
