"""Which queued sessions go to which free worker slot now.

Pure. Sessions are taken in FIFO order (creation time, then name) within each tenant's
concurrent-session limit, by the rule `admission.admit` applies (a queued session holds one of
its tenant's slots, `avatar_crds.phases.holds_slot`, and goes only while the holders ahead of it
leave room). Each goes to a free slot of a ready, undrained worker of a pool serving its tier:
the fullest such worker first, so that the others empty and the pool can shrink (Agones'
"Packed"). FIFO holds per tier: a session waits only when no slot serves its tier, and then so
does every later one of that tier, while other tiers go on.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

from avatar_crds.enums import Quality
from avatar_operator.admission import TenantRoom, Waiting, admit


class WaitReason(StrEnum):
    """Why a queued session stays queued (CamelCase: it becomes a condition's reason)."""

    TENANT_LIMIT = "TenantLimit"
    NO_POOL_FOR_TIER = "NoPoolForTier"
    NO_FREE_SLOT = "NoFreeSlot"


@dataclass(frozen=True)
class QueuedSession:
    name: str
    tenant: str
    quality: Quality
    created_at: datetime


@dataclass(frozen=True)
class PoolWorker:
    """One live worker pod and the slots its sessions hold."""

    pool: str
    pod: str
    slots: int
    taken: frozenset[int]
    ready: bool
    draining: bool


@dataclass(frozen=True)
class Binding:
    session: str
    pool: str
    pod: str
    slot: int


@dataclass(frozen=True)
class Assignment:
    bindings: tuple[Binding, ...]
    waiting: Mapping[str, WaitReason]


_Free = tuple[int, str, str, list[int]]
"""A worker with a free slot: (free slots, pool, pod, free slot numbers ascending)."""


@dataclass
class _Candidates:
    """The workers with a free slot of pools serving one set of tiers, fullest first. Only the
    first is ever bound to, and that makes it fuller still: the order holds without sorting."""

    workers: list[_Free]
    next: int = 0

    def first(self) -> _Free | None:
        return self.workers[self.next] if self.next < len(self.workers) else None

    def take(self) -> tuple[str, str, int]:
        """(pool, pod, slot) of the first worker's lowest free slot, now taken."""
        free, pool, pod, slots = self.workers[self.next]
        slot = slots.pop(0)
        if free == 1:
            self.next += 1
        else:
            self.workers[self.next] = (free - 1, pool, pod, slots)
        return pool, pod, slot


@dataclass
class _Slots:
    by_tiers: dict[frozenset[Quality], _Candidates] = field(default_factory=dict)

    def take(self, quality: Quality) -> tuple[str, str, int] | None:
        firsts = [
            (first, candidates)
            for tiers, candidates in self.by_tiers.items()
            if quality in tiers and (first := candidates.first()) is not None
        ]
        if not firsts:
            return None
        return min(firsts, key=lambda pair: pair[0])[1].take()


def assign(
    queue: Iterable[QueuedSession],
    pools: Mapping[str, frozenset[Quality]],
    workers: Iterable[PoolWorker],
    tenants: TenantRoom,
) -> Assignment:
    """Bindings for the queued sessions that can go now; why each of the others waits.

    `pools` names every pool and the tiers it serves, with workers or without (a pool scaled to
    none still serves its tiers: its sessions wait for a slot, not for a pool)."""
    queued = sorted(queue, key=lambda s: (s.created_at, s.name))
    allowed = set(admit((_waiting(s) for s in queued), tenants))
    served = frozenset(quality for tiers in pools.values() for quality in tiers)
    slots = _free_slots(pools, workers)
    bindings: list[Binding] = []
    waiting: dict[str, WaitReason] = {}
    for session in queued:
        if session.name not in allowed:
            waiting[session.name] = WaitReason.TENANT_LIMIT
        elif session.quality not in served:
            waiting[session.name] = WaitReason.NO_POOL_FOR_TIER
        elif (slot := slots.take(session.quality)) is None:
            waiting[session.name] = WaitReason.NO_FREE_SLOT
        else:
            bindings.append(Binding(session.name, *slot))
    return Assignment(tuple(bindings), waiting)


def _waiting(session: QueuedSession) -> Waiting:
    return Waiting(name=session.name, tenant=session.tenant, queued_at=session.created_at)


def _free_slots(pools: Mapping[str, frozenset[Quality]], workers: Iterable[PoolWorker]) -> _Slots:
    grouped: dict[frozenset[Quality], list[_Free]] = {}
    for worker in workers:
        tiers = pools.get(worker.pool)
        if tiers is None or not worker.ready or worker.draining:
            continue
        free = [slot for slot in range(worker.slots) if slot not in worker.taken]
        if free:
            grouped.setdefault(tiers, []).append((len(free), worker.pool, worker.pod, free))
    return _Slots({tiers: _Candidates(sorted(found)) for tiers, found in grouped.items()})
