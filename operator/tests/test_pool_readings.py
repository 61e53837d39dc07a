"""Pools, their worker pods and the sessions bound to them, read from raw bodies as the watches
hold them: the tiers served, each worker's slots and those taken, the sessions queued for each
pool, the workers the scaling plan counts and the status the controller writes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from avatar_crds import contract
from avatar_crds.enums import Quality
from avatar_crds.pool import WorkerPool
from avatar_crds.session import Binding
from avatar_operator import pool_readings
from avatar_operator.pool_assignment import PoolWorker
from avatar_operator.pool_scaling import Worker

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
NS = "fc"


def stamp(moment: datetime) -> str:
    return moment.isoformat().replace("+00:00", "Z")


def pool(name: str, *qualities: str, deleting: bool = False, **spec: Any) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS, "generation": 3}
    if deleting:
        meta["deletionTimestamp"] = stamp(T0)
    body = {"qualities": list(qualities), "worker": {"image": "w:1"}, "maxWorkers": 4, **spec}
    return {"apiVersion": "facecast.io/v1alpha1", "kind": "WorkerPool", "metadata": meta,
            "spec": body}  # fmt: skip


def pod(
    name: str,
    *,
    pool_name: str = "lite",
    slots: str | None = "2",
    ready: bool = True,
    draining: bool = False,
    phase: str = "Running",
    deleting: bool = False,
    created: datetime = T0 - timedelta(hours=1),
) -> dict[str, Any]:
    annotations = {} if slots is None else {contract.ANNOTATION_SLOTS: slots}
    if draining:
        annotations[contract.ANNOTATION_DRAINING_SINCE] = stamp(T0)
    meta: dict[str, Any] = {
        "name": name,
        "namespace": NS,
        "labels": contract.pool_worker_labels(pool_name),
        "annotations": annotations,
        "creationTimestamp": stamp(created),
    }
    if deleting:
        meta["deletionTimestamp"] = stamp(T0)
    condition = {"type": "Ready", "status": "True" if ready else "False"}
    return {
        "metadata": meta,
        "spec": {"serviceAccountName": f"{pool_name}-worker-{name[-5:]}"},
        "status": {"phase": phase, "conditions": [condition]},
    }


def session(
    name: str,
    phase: str | None = None,
    *,
    quality: str = "lite",
    on: tuple[str, int] | None = None,
    deleting: bool = False,
    **status: Any,
) -> dict[str, Any]:
    meta: dict[str, Any] = {"name": name, "namespace": NS}
    if deleting:
        meta["deletionTimestamp"] = stamp(T0)
    body_status: dict[str, Any] = dict(status)
    if phase is not None:
        body_status["phase"] = phase
    if on is not None:
        body_status["binding"] = {"pool": "lite", "pod": on[0], "slot": on[1]}
    return {
        "metadata": meta,
        "spec": {"tenant": "acme", "quality": quality, "avatarRef": "av-1"},
        "status": body_status,
    }


# --- pools and their queues ------------------------------------------------------------------


def test_serving_names_each_pools_tiers_but_not_a_pool_being_deleted() -> None:
    pools = [
        pool("gpu", "standard", "pro"),
        pool("cpu", "lite"),
        pool("old", "mock", deleting=True),
    ]
    assert pool_readings.serving(pools) == {
        "gpu": frozenset({Quality.STANDARD, Quality.PRO}),
        "cpu": frozenset({Quality.LITE}),
    }


def test_queued_counts_unbound_waiting_sessions_of_a_served_tier() -> None:
    pools = [pool("lite", "lite"), pool("gpu", "standard")]
    sessions = [
        session("created", None),
        session("queued", "queued"),
        session("pro", "queued", quality="pro"),  # no pool serves it
        session("standard", "queued", quality="standard"),
        session("running", "running", on=("lite-a", 0)),
        session("going", "queued", deleting=True),
        session("ended", "ended"),
    ]
    assert pool_readings.read_sessions(pools, sessions).queued == {"lite": 2, "gpu": 1}


def test_a_tier_two_pools_serve_is_queued_for_the_first_by_name() -> None:
    pools = [pool("zeta", "lite"), pool("alpha", "lite", "mock")]
    sessions = [session("s1", "queued"), session("s2", "queued", quality="mock")]
    assert pool_readings.read_sessions(pools, sessions).queued == {"alpha": 2, "zeta": 0}


def test_a_session_with_a_slot_chosen_in_memory_is_no_longer_queued() -> None:
    sessions = [session("s1", "queued"), session("s2", "queued")]
    chosen = {"s1": Binding(pool="lite", pod="lite-aaaaa", slot=0)}
    readings = pool_readings.read_sessions([pool("lite", "lite")], sessions, chosen)
    assert readings.queued == {"lite": 1}
    assert readings.taken == {"lite-aaaaa": {0}}


# --- workers and their slots -----------------------------------------------------------------


def test_pool_workers_reads_slots_taken_readiness_and_draining() -> None:
    pods = [
        pod("lite-aaaaa"),
        pod("lite-bbbbb", ready=False),
        pod("lite-ccccc", draining=True, slots="4"),
        pod("lite-done0", phase="Failed"),
        pod("lite-gone0", deleting=True),
    ]
    sessions = [
        session("s1", "running", on=("lite-aaaaa", 1)),
        session("s2", "ending", on=("lite-ccccc", 0)),
        session("s3", "starting", on=("lite-ccccc", 3)),
        session("s4", "ended", on=("lite-aaaaa", 0)),  # terminal: its slot is free
        session("s5", "failed", on=("lite-ccccc", 1)),
    ]
    reserved = [Binding(pool="lite", pod="lite-bbbbb", slot=0)]
    workers = pool_readings.pool_workers(pods, pool_readings.taken_slots(sessions, reserved))
    assert workers == [
        PoolWorker("lite", "lite-aaaaa", 2, frozenset({1}), ready=True, draining=False),
        PoolWorker("lite", "lite-bbbbb", 2, frozenset({0}), ready=False, draining=False),
        PoolWorker("lite", "lite-ccccc", 4, frozenset({0, 3}), ready=True, draining=True),
    ]


def test_a_worker_whose_slot_count_cannot_be_read_offers_no_slot() -> None:
    pods = [
        pod("lite-aaaaa", slots=None),
        pod("lite-bbbbb", slots="many"),
        pod("lite-c", slots="65"),
    ]
    assert [w.slots for w in pool_readings.pool_workers(pods, {})] == [0, 0, 0]


def test_bound_sessions_are_those_holding_a_slot_of_that_worker() -> None:
    sessions = [
        session("s1", "running", on=("lite-aaaaa", 0)),
        session("s2", "starting", on=("lite-aaaaa", 1)),
        session("s3", "running", on=("lite-bbbbb", 0)),
        session("s4", "ended", on=("lite-aaaaa", 1)),
        session("s5", "queued"),
    ]
    bound = pool_readings.bound_sessions("lite-aaaaa", sessions)
    assert [s["metadata"]["name"] for s in bound] == ["s1", "s2"]


def test_idle_since_is_the_latest_of_creation_a_finished_session_and_last_seen_busy() -> None:
    worker = pod("lite-aaaaa", created=T0 - timedelta(hours=1))
    assert pool_readings.idle_since(worker, [], None, T0) == T0 - timedelta(hours=1)
    finished = session(
        "s1", "ended", on=("lite-aaaaa", 0), finishedAt=stamp(T0 - timedelta(minutes=5))
    )
    other = session("s2", "ended", on=("lite-bbbbb", 0), finishedAt=stamp(T0))
    assert pool_readings.idle_since(worker, [finished, other], None, T0) == T0 - timedelta(
        minutes=5
    )
    seen = T0 - timedelta(minutes=1)
    assert pool_readings.idle_since(worker, [finished], seen, T0) == seen


def test_scaling_workers_count_each_live_workers_sessions() -> None:
    pods = [pod("lite-aaaaa"), pod("lite-bbbbb", draining=True), pod("lite-old00", phase="Failed")]
    sessions = [
        session("s1", "running", on=("lite-aaaaa", 0)),
        session("s2", "ended", on=("lite-bbbbb", 1), finishedAt=stamp(T0 - timedelta(minutes=5))),
    ]
    reserved = {"s3": Binding(pool="lite", pod="lite-aaaaa", slot=1)}
    readings = pool_readings.read_sessions([pool("lite", "lite")], sessions, reserved)
    workers = pool_readings.scaling_workers(pods, readings, {}, T0)
    created = T0 - timedelta(hours=1)
    assert workers == [
        Worker("lite-aaaaa", 2, 2, ready=True, draining=False, idle_since=created),
        # Its finished session counts for its idle time, not for its busy slots.
        Worker("lite-bbbbb", 2, 0, ready=True, draining=True, idle_since=T0 - timedelta(minutes=5)),
    ]


# --- status -----------------------------------------------------------------------------------


def worker(name: str, busy: int = 0, *, ready: bool = True, draining: bool = False) -> Worker:
    return Worker(name, 2, busy, ready, draining, T0)


def test_status_counts_ready_draining_free_and_busy() -> None:
    parsed = WorkerPool.model_validate(pool("lite", "lite", maxWorkers=4))
    workers = [
        worker("a", 1),
        worker("b"),
        worker("c", ready=False),
        worker("d", 2, draining=True),
    ]
    status = pool_readings.pool_status(parsed, workers, desired=3, queued=0, now=T0)
    assert status.desired_workers == 3
    assert status.ready_workers == 2
    assert status.draining_workers == 1
    assert status.free_slots == 3  # a: 1, b: 2; not the starting one, nor the draining one
    assert status.busy_slots == 3
    assert status.observed_generation == 3
    ready = {c.type: c for c in status.conditions}[pool_readings.READY]
    assert (ready.status, ready.reason) == ("False", "WorkersStarting")
    assert ready.message == "2 of 3 workers ready"


def test_conditions_move_their_transition_time_only_on_a_change() -> None:
    parsed = WorkerPool.model_validate(pool("lite", "lite", maxWorkers=2))
    full = [worker("a", 2), worker("b", 2)]
    first = pool_readings.pool_status(parsed, full, desired=2, queued=3, now=T0)
    conditions = {c.type: c for c in first.conditions}
    limited = conditions[pool_readings.SCALING_LIMITED]
    assert (limited.status, limited.reason) == ("True", "MaxWorkers")
    assert limited.message == "at maxWorkers (2) with 3 sessions queued"
    assert conditions[pool_readings.READY].status == "True"

    later = T0 + timedelta(minutes=1)
    parsed.status = first
    again = pool_readings.pool_status(parsed, full, desired=2, queued=1, now=later)
    assert {c.type: c.last_transition_time for c in again.conditions} == {
        pool_readings.READY: T0,
        pool_readings.SCALING_LIMITED: T0,
    }
    parsed.status = again
    drained = pool_readings.pool_status(parsed, full, desired=2, queued=0, now=later)
    limited = {c.type: c for c in drained.conditions}[pool_readings.SCALING_LIMITED]
    assert (limited.status, limited.last_transition_time) == ("False", later)


def test_an_unchanged_pool_makes_an_identical_status() -> None:
    """The controller writes the status only when it changed: the same facts must give the
    same status, to the last field."""
    parsed = WorkerPool.model_validate(pool("lite", "lite"))
    status = pool_readings.pool_status(parsed, [worker("a")], desired=1, queued=0, now=T0)
    parsed.status = status
    later = T0 + timedelta(minutes=5)
    again = pool_readings.pool_status(parsed, [worker("a")], desired=1, queued=0, now=later)
    assert again.to_k8s() == status.to_k8s()
