"""Pure readings of WorkerPools, their worker pods and the sessions bound to them: which tiers
each pool serves, each worker's slots and the slots taken, the sessions queued for each pool,
the workers `pool_scaling` plans with, and the status the pool controller writes.

Raw bodies in, as the watches hold them, for one namespace at a time: a binding names its pod
by name only, and pod names are unique only within a namespace.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence, Set
from datetime import datetime
from typing import Any, NamedTuple

from avatar_crds import contract
from avatar_crds.enums import Quality
from avatar_crds.phases import WORKER_PHASES, body_is_being_deleted, body_phase, is_waiting
from avatar_crds.pool import PoolCondition, WorkerPool, WorkerPoolStatus
from avatar_crds.session import MAX_SLOTS_PER_WORKER, Binding
from avatar_operator import conditions
from avatar_operator.pool_assignment import PoolWorker
from avatar_operator.pool_scaling import Worker

READY = conditions.READY
SCALING_LIMITED = "ScalingLimited"
FINISHED_POD_PHASES = frozenset({"Succeeded", "Failed"})

# --- pools -------------------------------------------------------------------------------


def serving(pools: Iterable[Mapping[str, Any]]) -> dict[str, frozenset[Quality]]:
    """Each pool of one namespace (not being deleted) and the tiers it serves."""
    return {
        pool["metadata"]["name"]: frozenset(Quality(q) for q in pool["spec"]["qualities"])
        for pool in pools
        if not body_is_being_deleted(pool)
    }


def _first_pool_by_tier(pools: Iterable[Mapping[str, Any]]) -> dict[Quality, str]:
    """A tier two pools serve counts for the first by name, so that one pool grows for it,
    not both."""
    first: dict[Quality, str] = {}
    for name, tiers in sorted(serving(pools).items(), reverse=True):
        first.update(dict.fromkeys(tiers, name))
    return first


class SessionReadings(NamedTuple):
    """What the pool controller reads of a namespace's sessions, in one pass over them (a
    namespace may hold ten thousand, and a pool is reconciled after every binding)."""

    taken: dict[str, set[int]]
    """Per worker pod, the slots its bound sessions hold and those chosen in memory."""
    served: dict[str, list[Mapping[str, Any]]]
    """Per worker pod, every session bound to it, finished ones too (for `idle_since`)."""
    queued: dict[str, int]
    """Per pool, the sessions waiting for one of its slots: created or queued, not bound and
    not reserved (a slot chosen for them in memory), of a tier the pool serves."""


def read_sessions(
    pools: Iterable[Mapping[str, Any]],
    sessions: Iterable[Mapping[str, Any]],
    reserved: Mapping[str, Binding] = {},
) -> SessionReadings:
    """`reserved`: the slots chosen in memory, by session name."""
    pools = list(pools)
    first = _first_pool_by_tier(pools)
    readings = SessionReadings(taken={}, served={}, queued=dict.fromkeys(serving(pools), 0))
    for session in sessions:
        phase = body_phase(session)
        bound = binding_of(session)
        if bound is not None:
            readings.served.setdefault(bound.pod, []).append(session)
            if phase in WORKER_PHASES:
                readings.taken.setdefault(bound.pod, set()).add(bound.slot)
        elif (
            is_waiting(phase, deleting=body_is_being_deleted(session))
            and session["metadata"]["name"] not in reserved
            and (pool := first.get(Quality(session["spec"]["quality"]))) is not None
        ):
            readings.queued[pool] += 1
    for binding in reserved.values():
        readings.taken.setdefault(binding.pod, set()).add(binding.slot)
    return readings


# --- worker pods -------------------------------------------------------------------------


def name_of(body: Mapping[str, Any]) -> str:
    return str(body["metadata"]["name"])


def pool_of(pod: Mapping[str, Any]) -> str | None:
    return ((pod.get("metadata") or {}).get("labels") or {}).get(contract.LABEL_POOL)


def account_of(pod: Mapping[str, Any]) -> str:
    """The worker's identity: its ServiceAccount, Role and RoleBinding are all named so."""
    return str((pod.get("spec") or {}).get("serviceAccountName") or "")


def is_finished(pod: Mapping[str, Any]) -> bool:
    return (pod.get("status") or {}).get("phase") in FINISHED_POD_PHASES


def is_live(pod: Mapping[str, Any]) -> bool:
    """Serving, or about to: not finished, not being deleted."""
    return not is_finished(pod) and not body_is_being_deleted(pod)


def is_ready(pod: Mapping[str, Any]) -> bool:
    """Its readiness probe passed: the worker's renderer is loaded."""
    return any(
        c.get("type") == "Ready" and c.get("status") == "True"
        for c in (pod.get("status") or {}).get("conditions") or []
    )


def is_draining(pod: Mapping[str, Any]) -> bool:
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    return contract.ANNOTATION_DRAINING_SINCE in annotations


def slots_of(pod: Mapping[str, Any]) -> int:
    """Its slot count; 0 (no session is bound to it, and it goes when idle) if unreadable."""
    annotations = (pod.get("metadata") or {}).get("annotations") or {}
    try:
        slots = int(annotations.get(contract.ANNOTATION_SLOTS, ""))
    except ValueError:
        return 0
    return slots if 1 <= slots <= MAX_SLOTS_PER_WORKER else 0


# --- sessions on workers -------------------------------------------------------------------


class BoundSlot(NamedTuple):
    """A `status.binding` as read on every pass over every session: a plain tuple, without
    pydantic's validation (the API server checked the field against the CRD)."""

    pool: str
    pod: str
    slot: int


def binding_of(session: Mapping[str, Any]) -> BoundSlot | None:
    raw = (session.get("status") or {}).get("binding")
    if not isinstance(raw, Mapping):
        return None
    pool, pod, slot = raw.get("pool"), raw.get("pod"), raw.get("slot")
    if not (isinstance(pool, str) and isinstance(pod, str) and isinstance(slot, int)):
        return None
    return BoundSlot(pool, pod, slot)


def held_slot(session: Mapping[str, Any]) -> BoundSlot | None:
    """The slot the session holds: bound, and starting, running or ending (terminal frees it)."""
    bound = binding_of(session)
    return bound if bound is not None and body_phase(session) in WORKER_PHASES else None


def bound_sessions(pod_name: str, sessions: Iterable[Mapping[str, Any]]) -> list[Mapping[str, Any]]:
    """The sessions holding a slot of that worker: its grant names them."""
    return [
        session
        for session in sessions
        if (held := held_slot(session)) is not None and held.pod == pod_name
    ]


def taken_slots(
    sessions: Iterable[Mapping[str, Any]], reserved: Iterable[Binding] = ()
) -> dict[str, set[int]]:
    """Per worker pod, the slots its bound sessions hold and those chosen in memory."""
    taken: dict[str, set[int]] = {}
    for session in sessions:
        held = held_slot(session)
        if held is not None:
            taken.setdefault(held.pod, set()).add(held.slot)
    for binding in reserved:
        taken.setdefault(binding.pod, set()).add(binding.slot)
    return taken


def pool_workers(
    pods: Iterable[Mapping[str, Any]], taken: Mapping[str, Set[int]]
) -> list[PoolWorker]:
    """Every live pool worker, its slots and those `taken` (`taken_slots`): what
    `pool_assignment` binds to."""
    workers = []
    for pod in pods:
        pool = pool_of(pod)
        if pool is None or not is_live(pod):
            continue
        name = name_of(pod)
        workers.append(
            PoolWorker(
                pool=pool,
                pod=name,
                slots=slots_of(pod),
                taken=frozenset(taken.get(name, ())),
                ready=is_ready(pod),
                draining=is_draining(pod),
            )
        )
    return workers


def idle_since(
    pod: Mapping[str, Any],
    served: Iterable[Mapping[str, Any]],
    seen_busy: datetime | None,
    now: datetime,
) -> datetime:
    """Since when the worker has held no session: the latest of its creation, the end of each
    finished session it served among `served` (kept on the session, so an operator restart
    remembers) and the last time the controller saw it busy (`seen_busy`, for sessions already
    deleted)."""
    stamp = (pod.get("metadata") or {}).get("creationTimestamp")
    moments = [datetime.fromisoformat(stamp) if stamp else now]
    name = name_of(pod)
    for session in served:
        binding = binding_of(session)
        if binding is None or binding.pod != name:
            continue
        status = session.get("status") or {}
        for left in (status.get("finishedAt"), (status.get("worker") or {}).get("leftAt")):
            if left:
                moments.append(datetime.fromisoformat(left))
    if seen_busy is not None:
        moments.append(seen_busy)
    return max(moments)


def scaling_workers(
    pods: Iterable[Mapping[str, Any]],
    readings: SessionReadings,
    seen_busy: Mapping[str, datetime],
    now: datetime,
) -> list[Worker]:
    """The live workers as `pool_scaling.plan` counts them."""
    by_name = {name_of(pod): pod for pod in pods}
    workers = []
    for found in pool_workers(by_name.values(), readings.taken):
        pod, seen = by_name[found.pod], seen_busy.get(found.pod)
        workers.append(
            Worker(
                name=found.pod,
                slots=found.slots,
                busy=len(found.taken),
                ready=found.ready,
                draining=found.draining,
                idle_since=idle_since(pod, readings.served.get(found.pod, ()), seen, now),
            )
        )
    return workers


# --- the pool's status -----------------------------------------------------------------------


def pool_status(
    pool: WorkerPool, workers: Sequence[Worker], desired: int, queued: int, now: datetime
) -> WorkerPoolStatus:
    """What the pool's status says of its live `workers` and the plan's `desired` count.
    Condition transition times move only when a condition's status changes."""
    serving_workers = [w for w in workers if w.ready and not w.draining]
    ready = len(serving_workers)
    observed = (
        conditions.Observed(
            READY,
            "True" if ready >= desired else "False",
            "WorkersReady" if ready >= desired else "WorkersStarting",
            f"{ready} of {desired} workers ready",
        ),
        _scaling_limited(desired, pool.spec.max_workers, queued),
    )
    merged = conditions.merge(
        list(pool.status.conditions), observed, now=now, generation=pool.metadata.generation
    )
    return WorkerPoolStatus(
        observed_generation=pool.metadata.generation,
        desired_workers=desired,
        ready_workers=ready,
        draining_workers=sum(w.draining for w in workers),
        free_slots=sum(max(0, w.slots - w.busy) for w in serving_workers),
        busy_slots=sum(w.busy for w in workers),
        conditions=[PoolCondition.model_validate(c.model_dump()) for c in merged],
    )


def _scaling_limited(desired: int, max_workers: int, queued: int) -> conditions.Observed:
    if desired >= max_workers and queued:
        message = f"at maxWorkers ({max_workers}) with {queued} sessions queued"
        return conditions.Observed(SCALING_LIMITED, "True", "MaxWorkers", message)
    return conditions.Observed(
        SCALING_LIMITED, "False", "WithinLimits", "the pool can grow to what it needs"
    )
