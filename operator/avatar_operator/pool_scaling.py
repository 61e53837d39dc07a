"""How many workers a WorkerPool should have, and which to add, drain, take back or delete.

Pure. Agones' buffer autoscaler, counted in slots: a pool wants slots for every session its
workers hold and every session queued for it, plus its buffer, either a number of free slots or
a percentage of all its slots. It grows to that (never past `maxWorkers`), and shrinks only by
workers that have held no session for the scale-down delay (never below `minWorkers`, never
below what it wants). A worker that holds a session is never deleted: when the pool must shed
it (its `maxWorkers` was lowered) it is drained, takes no new session, and is deleted once its
last one has left. A pool that must grow again takes its draining workers back before it
creates new ones: they are warm already.

Draining workers serve the sessions they hold and nothing else: they count in neither the
pool's desired workers nor its wanted slots, and their sessions count in no one's demand.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta

from avatar_crds.pool import WorkerPoolSpec


@dataclass(frozen=True)
class Worker:
    """One live worker pod of the pool (not finished, not being deleted)."""

    name: str
    slots: int
    """Sessions it serves at once (`contract.ANNOTATION_SLOTS`)."""
    busy: int
    """Sessions bound to it."""
    ready: bool
    """Its renderer is loaded (the pod is Ready); until then it is starting."""
    draining: bool
    idle_since: datetime
    """Since when it has held no session: its creation if it never held one. Read only while
    it holds none."""


@dataclass(frozen=True)
class PoolShape:
    slots_per_worker: int
    min_workers: int
    max_workers: int
    buffer: int | str
    scale_down_delay: timedelta

    @classmethod
    def of(cls, spec: WorkerPoolSpec) -> PoolShape:
        return cls(
            slots_per_worker=spec.slots_per_worker,
            min_workers=spec.min_workers,
            max_workers=spec.max_workers,
            buffer=spec.buffer,
            scale_down_delay=timedelta(seconds=spec.scale_down_delay_seconds),
        )


@dataclass(frozen=True)
class ScalingPlan:
    desired: int
    """Undrained workers the pool has once the plan is carried out."""
    create: int
    undrain: tuple[str, ...] = ()
    drain: tuple[str, ...] = ()
    delete: tuple[str, ...] = ()
    recheck_at: datetime | None = None
    """When an idle worker kept only by the scale-down delay may go: plan again then."""


def wanted_slots(demand: int, buffer: int | str) -> int:
    """Slots that hold `demand` sessions with the buffer free: `demand + buffer` for a count;
    for a percentage p, the fewest slots of which p% are free, ceil(demand / (1 - p/100))."""
    if isinstance(buffer, int):
        return demand + buffer
    percent = int(buffer.removesuffix("%"))
    return -(-demand * 100 // (100 - percent))


def plan(workers: Sequence[Worker], queued: int, shape: PoolShape, now: datetime) -> ScalingPlan:
    """What to do now, given the pool's workers and the sessions queued for it."""
    active = [w for w in workers if not w.draining]
    drained = tuple(w.name for w in workers if w.draining and w.busy == 0)
    emptying = [w for w in workers if w.draining and w.busy > 0]
    if len(active) > shape.max_workers:
        return _shed(active, shape.max_workers, drained)
    demand = sum(w.busy for w in active) + queued
    capacity = sum(w.slots for w in active)
    count = len(active)

    def short() -> bool:
        return capacity < wanted_slots(demand, shape.buffer) or count < shape.min_workers

    if count < shape.max_workers and short():
        undrain: list[str] = []
        for worker in sorted(emptying, key=lambda w: (-w.busy, w.name)):
            if count >= shape.max_workers or not short():
                break
            undrain.append(worker.name)
            count, capacity, demand = count + 1, capacity + worker.slots, demand + worker.busy
        missing = max(0, wanted_slots(demand, shape.buffer) - capacity)
        new = max(-(-missing // shape.slots_per_worker), shape.min_workers - count)
        create = min(new, shape.max_workers - count)
        return ScalingPlan(count + create, create, undrain=tuple(undrain), delete=drained)
    return _shrink(active, demand, capacity, shape, now, drained)


def _shed(active: list[Worker], max_workers: int, drained: tuple[str, ...]) -> ScalingPlan:
    """More undrained workers than `maxWorkers` allows (it was lowered): idle ones go at once,
    starting before ready, then the least busy drain."""
    order = sorted(active, key=lambda w: (w.busy, w.ready, w.name))[: len(active) - max_workers]
    idle = tuple(w.name for w in order if w.busy == 0)
    busy = tuple(w.name for w in order if w.busy > 0)
    return ScalingPlan(max_workers, 0, drain=busy, delete=drained + idle)


def _shrink(
    active: list[Worker],
    demand: int,
    capacity: int,
    shape: PoolShape,
    now: datetime,
    drained: tuple[str, ...],
) -> ScalingPlan:
    """Delete idle workers past the delay while the rest still hold what the pool wants:
    starting ones first (nothing loaded to lose), then the longest idle."""
    wanted = wanted_slots(demand, shape.buffer)
    count = len(active)
    delete = list(drained)
    recheck_at: datetime | None = None
    idle = sorted((w for w in active if w.busy == 0), key=lambda w: (w.ready, w.idle_since, w.name))
    for worker in idle:
        if count <= shape.min_workers:
            break
        if capacity - worker.slots < wanted:
            continue
        due = worker.idle_since + shape.scale_down_delay
        if due > now:
            recheck_at = due if recheck_at is None else min(recheck_at, due)
            continue
        delete.append(worker.name)
        count, capacity = count - 1, capacity - worker.slots
    return ScalingPlan(count, 0, delete=tuple(delete), recheck_at=recheck_at)
