"""Which queued sessions their tenants' concurrency limits let go now, in FIFO order.

Pure. A queued session holds one of its tenant's slots (`avatar_crds.phases.holds_slot`), so it
goes only while the holders ahead of it leave room: normally always, since the API refuses a
create beyond the limit; across API replicas racing on creates, this is the final word. A
tenant at its limit does not hold back other tenants. Which free slot each one then takes is
`pool_assignment`'s.
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
class TenantRoom:
    held_by_tenant: Mapping[str, int]
    """Tenant slots held by sessions not in the queue (`capacity_readings.read_queues`)."""
    max_by_tenant: Mapping[str, int]
    default_max: int = 1


def admit(queue: Iterable[Waiting], room: TenantRoom) -> list[str]:
    """Names within their tenant's limit, oldest first."""
    held = Counter(room.held_by_tenant)
    admitted: list[str] = []
    for session in sorted(queue, key=lambda s: (s.queued_at, s.name)):
        if held[session.tenant] >= room.max_by_tenant.get(session.tenant, room.default_max):
            continue
        held[session.tenant] += 1
        admitted.append(session.name)
    return admitted
