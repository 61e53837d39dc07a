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
    active_by_tenant: Mapping[str, int]
    """Sessions holding or about to hold a worker (starting, running, ending), per tenant."""
    max_by_tenant: Mapping[str, int]
    default_max: int = 1


def admit(queue: Iterable[Waiting], capacity: Capacity) -> list[str]:
    """Names to start now, oldest first."""
    free = capacity.free_gpus
    active = Counter(capacity.active_by_tenant)
    admitted: list[str] = []
    for session in sorted(queue, key=lambda s: (s.queued_at, s.name)):
        limit = capacity.max_by_tenant.get(session.tenant, capacity.default_max)
        if active[session.tenant] >= limit:
            continue
        if free < capacity.gpus_per_session:
            break
        free -= capacity.gpus_per_session
        active[session.tenant] += 1
        admitted.append(session.name)
    return admitted
