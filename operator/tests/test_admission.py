"""FIFO admission against GPUs and tenant concurrency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from avatar_operator.admission import Capacity, Waiting, admit

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def waiting(name: str, tenant: str, minute: int) -> Waiting:
    return Waiting(name=name, tenant=tenant, queued_at=T0 + timedelta(minutes=minute))


def capacity(free: int, active: dict[str, int] | None = None, **limits: int) -> Capacity:
    return Capacity(
        free_gpus=free, gpus_per_session=1, held_by_tenant=active or {}, max_by_tenant=limits
    )


def test_oldest_first_until_gpus_run_out() -> None:
    queue = [waiting("c", "a", 3), waiting("a", "a", 1), waiting("b", "a", 2)]
    assert admit(queue, capacity(2, a=10)) == ["a", "b"]


def test_no_gpu_no_admission() -> None:
    assert admit([waiting("a", "a", 1)], capacity(0, a=10)) == []


def test_tenant_limit_skips_only_that_tenant() -> None:
    queue = [waiting("a1", "a", 1), waiting("b1", "b", 2), waiting("a2", "a", 3)]
    assert admit(queue, capacity(5, {"a": 1}, a=2, b=1)) == ["a1", "b1"]


def test_later_session_never_jumps_a_gpu_blocked_one() -> None:
    cap = Capacity(free_gpus=1, gpus_per_session=2, held_by_tenant={}, max_by_tenant={"a": 9})
    assert admit([waiting("a", "a", 1), waiting("b", "a", 2)], cap) == []


def test_unknown_tenant_gets_the_default_limit() -> None:
    queue = [waiting("x1", "ghost", 1), waiting("x2", "ghost", 2)]
    assert admit(queue, capacity(5)) == ["x1"]


def test_ties_break_by_name_for_a_stable_order() -> None:
    assert admit([waiting("b", "a", 1), waiting("a", "a", 1)], capacity(1, a=5)) == ["a"]


def test_cpu_only_clusters_admit_by_tenant_limit_alone() -> None:
    cap = Capacity(free_gpus=0, gpus_per_session=0, held_by_tenant={}, max_by_tenant={"a": 2})
    queue = [waiting("x", "a", 1), waiting("y", "a", 2), waiting("z", "a", 3)]
    assert admit(queue, cap) == ["x", "y"]
