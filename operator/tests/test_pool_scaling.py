"""A WorkerPool's scaling plan: the buffer kept, growth on queued sessions, idle workers removed
only after the delay, busy workers drained and never deleted. Examples, then the invariants
over arbitrary pools (hypothesis)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_crds.pool import WorkerPoolSpec
from avatar_operator.pool_scaling import PoolShape, ScalingPlan, Worker, plan, wanted_slots

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
DELAY = timedelta(seconds=300)


def shape(
    slots: int = 4, min_workers: int = 0, max_workers: int = 10, buffer: int | str = 1
) -> PoolShape:
    return PoolShape(slots, min_workers, max_workers, buffer, DELAY)


def worker(
    name: str,
    busy: int = 0,
    *,
    slots: int = 4,
    ready: bool = True,
    draining: bool = False,
    idle_for: float = 3600,
) -> Worker:
    return Worker(name, slots, busy, ready, draining, T0 - timedelta(seconds=idle_for))


# --- examples -----------------------------------------------------------------------------


def test_an_empty_pool_warms_one_worker_for_its_buffer() -> None:
    assert plan([], 0, shape(buffer=1), T0) == ScalingPlan(desired=1, create=1)


def test_buffer_zero_one_slot_is_a_worker_per_queued_session() -> None:
    """Today's behaviour as a configuration: no warm worker, one started per session."""
    assert plan([], 0, shape(slots=1, buffer=0), T0) == ScalingPlan(desired=0, create=0)
    assert plan([], 3, shape(slots=1, buffer=0), T0).create == 3
    idle = [worker("w", slots=1)]
    assert plan(idle, 0, shape(slots=1, buffer=0), T0).delete == ("w",)


def test_queued_sessions_scale_the_pool_up() -> None:
    full = [worker("a", 4), worker("b", 4)]
    assert plan(full, 5, shape(buffer=0), T0) == ScalingPlan(desired=4, create=2)


def test_a_percentage_buffer_is_of_all_the_pools_slots() -> None:
    assert wanted_slots(12, "25%") == 16  # 4 of 16 free
    assert wanted_slots(13, "25%") == 18  # ceil(13 / 0.75)
    assert wanted_slots(0, "25%") == 0
    eight = shape(slots=8, buffer="25%")
    assert plan([worker("a", 8, slots=8), worker("b", 4, slots=8)], 0, eight, T0).create == 0
    assert plan([worker("a", 8, slots=8), worker("b", 5, slots=8)], 0, eight, T0).create == 1


def test_growth_stops_at_max_workers() -> None:
    assert plan([worker("a", 4)], 40, shape(max_workers=3), T0) == ScalingPlan(3, 2)


def test_min_workers_are_kept_even_without_demand() -> None:
    assert plan([], 0, shape(min_workers=2, buffer=0), T0).create == 2
    idle = [worker("a"), worker("b")]
    assert plan(idle, 0, shape(min_workers=2, buffer=0), T0).delete == ()


def test_idle_workers_go_only_after_the_delay() -> None:
    young = [worker("a", 1), worker("b", idle_for=100)]
    kept = plan(young, 0, shape(buffer=0), T0)
    assert kept.delete == ()
    assert kept.recheck_at == T0 + DELAY - timedelta(seconds=100)
    old = [worker("a", 1), worker("b", idle_for=300)]
    assert plan(old, 0, shape(buffer=0), T0) == ScalingPlan(desired=1, create=0, delete=("b",))


def test_starting_workers_go_before_ready_ones_then_the_longest_idle() -> None:
    workers = [
        worker("ready-old", idle_for=9000),
        worker("ready-older", idle_for=9999),
        worker("starting", ready=False),
    ]
    assert plan(workers, 0, shape(buffer=4), T0).delete == ("starting", "ready-older")


def test_a_worker_that_holds_a_session_is_never_deleted() -> None:
    assert plan([worker("a", 1)], 0, shape(buffer=0), T0).delete == ()


def test_lowered_max_deletes_idle_workers_and_drains_busy_ones() -> None:
    workers = [worker("a", 3), worker("b", 1), worker("c", idle_for=1), worker("d", 2)]
    assert plan(workers, 0, shape(max_workers=2), T0) == ScalingPlan(
        desired=2, create=0, drain=("b",), delete=("c",)
    )


def test_a_drained_worker_is_deleted_once_its_last_session_has_left() -> None:
    workers = [worker("a", 1), worker("gone", draining=True), worker("left", 1, draining=True)]
    decided = plan(workers, 0, shape(buffer=3), T0)
    assert decided.delete == ("gone",)
    assert "left" not in decided.undrain


def test_draining_workers_are_taken_back_before_new_ones_are_made() -> None:
    workers = [worker("a", 4), worker("d1", 1, draining=True), worker("d2", 3, draining=True)]
    decided = plan(workers, 6, shape(buffer=0), T0)
    # d2 back first (busiest): demand 4+3+6 = 13 on 8 slots, then d1: 14 on 12, then 1 new.
    assert decided == ScalingPlan(desired=4, create=1, undrain=("d2", "d1"))


def test_shape_is_read_from_the_pool_spec() -> None:
    spec = WorkerPoolSpec.model_validate(
        {"qualities": ["pro"], "worker": {"image": "w"}, "maxWorkers": 3, "buffer": "10%"}
    )
    assert PoolShape.of(spec) == PoolShape(1, 0, 3, "10%", timedelta(seconds=300))


# --- invariants ---------------------------------------------------------------------------


@st.composite
def shapes(draw: st.DrawFn) -> PoolShape:
    min_workers = draw(st.integers(0, 5))
    buffer = draw(st.integers(0, 12) | st.integers(0, 99).map(lambda p: f"{p}%"))
    return PoolShape(
        slots_per_worker=draw(st.integers(1, 8)),
        min_workers=min_workers,
        max_workers=draw(st.integers(max(1, min_workers), 10)),
        buffer=buffer,
        scale_down_delay=timedelta(seconds=draw(st.sampled_from([0, 60, 300]))),
    )


@st.composite
def workers(draw: st.DrawFn) -> list[Worker]:
    found = []
    for index in range(draw(st.integers(0, 14))):
        slots = draw(st.integers(1, 8))
        found.append(
            Worker(
                name=f"w{index}",
                slots=slots,
                busy=draw(st.integers(0, slots)),
                ready=draw(st.booleans()),
                draining=draw(st.integers(0, 3)) == 0,
                idle_since=T0 - timedelta(seconds=draw(st.integers(0, 600))),
            )
        )
    return found


def _buffer_kept(capacity: int, demand: int, buffer: int | str) -> bool:
    free = capacity - demand
    if isinstance(buffer, int):
        return free >= buffer
    return free * 100 >= int(buffer[:-1]) * capacity


@settings(max_examples=600, deadline=None, database=None)
@given(workers(), st.integers(0, 30), shapes())
def test_plan_invariants(pool: list[Worker], queued: int, shape: PoolShape) -> None:
    decided = plan(pool, queued, shape, T0)
    by_name = {w.name: w for w in pool}
    active = [w for w in pool if not w.draining]
    over_max = len(active) > shape.max_workers

    # desired within [min, max]
    assert shape.min_workers <= decided.desired <= shape.max_workers
    # each worker gets at most one verdict, and only one that fits its state
    verdicts = [*decided.undrain, *decided.drain, *decided.delete]
    assert len(verdicts) == len(set(verdicts))
    assert set(verdicts) <= set(by_name)
    assert all(by_name[name].draining for name in decided.undrain)
    assert all(not by_name[name].draining and by_name[name].busy for name in decided.drain)
    # never delete a worker that holds a session; idle ones only after the delay (or over max)
    for name in decided.delete:
        gone = by_name[name]
        assert gone.busy == 0
        if not gone.draining and not over_max:
            assert T0 - gone.idle_since >= shape.scale_down_delay
    # desired is what is left undrained, plus what is made
    kept = [w for w in active if w.name not in decided.delete and w.name not in decided.drain] + [
        by_name[name] for name in decided.undrain
    ]
    assert decided.desired == len(kept) + decided.create
    assert decided.create >= 0
    if decided.create:
        # made only once every warm draining worker is taken back, never past maxWorkers in all
        assert not decided.drain
        assert all(w.name in decided.undrain for w in pool if w.draining and w.busy)
        assert len(pool) - len(decided.delete) + decided.create <= shape.max_workers
    capacity = sum(w.slots for w in kept) + decided.create * shape.slots_per_worker
    demand = sum(w.busy for w in kept) + queued
    # the buffer is kept unless the pool is at its maximum
    if decided.desired < shape.max_workers:
        assert _buffer_kept(capacity, demand, shape.buffer)
    # and no more is made than the buffer and minWorkers call for
    if decided.create:
        fewer = capacity - shape.slots_per_worker
        assert not _buffer_kept(fewer, demand, shape.buffer) or (
            decided.desired - 1 < shape.min_workers
        )
