"""FIFO admission within each tenant's concurrency limit."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

from avatar_operator.admission import TenantRoom, Waiting, admit

T0 = datetime(2026, 11, 21, tzinfo=UTC)


def waiting(name: str, tenant: str, minute: int) -> Waiting:
    return Waiting(name=name, tenant=tenant, queued_at=T0 + timedelta(minutes=minute))


def room(held: dict[str, int] | None = None, **limits: int) -> TenantRoom:
    return TenantRoom(held_by_tenant=held or {}, max_by_tenant=limits)


def test_oldest_first_up_to_the_limit() -> None:
    queue = [waiting("c", "a", 3), waiting("a", "a", 1), waiting("b", "a", 2)]
    assert admit(queue, room(a=2)) == ["a", "b"]


def test_tenant_limit_skips_only_that_tenant() -> None:
    queue = [waiting("a1", "a", 1), waiting("b1", "b", 2), waiting("a2", "a", 3)]
    assert admit(queue, room({"a": 1}, a=2, b=1)) == ["a1", "b1"]


def test_unknown_tenant_gets_the_default_limit() -> None:
    queue = [waiting("x1", "ghost", 1), waiting("x2", "ghost", 2)]
    assert admit(queue, room()) == ["x1"]


def test_ties_break_by_name_for_a_stable_order() -> None:
    assert admit([waiting("b", "a", 1), waiting("a", "a", 1)], room(a=1)) == ["a"]
