"""Binding queued sessions to free worker slots: FIFO per tier, within tenant limits, never two
sessions on one slot, the fullest worker first. Examples, then the invariants over arbitrary
queues and pools (hypothesis)."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

from hypothesis import given, settings
from hypothesis import strategies as st

from avatar_crds.enums import Quality
from avatar_operator.admission import TenantRoom
from avatar_operator.pool_assignment import (
    Assignment,
    Binding,
    PoolWorker,
    QueuedSession,
    WaitReason,
    assign,
)

T0 = datetime(2026, 11, 21, 12, tzinfo=UTC)
STANDARD, PRO = Quality.STANDARD, Quality.PRO
POOLS = {"std": frozenset({STANDARD}), "pro": frozenset({PRO})}
ROOMY = TenantRoom(held_by_tenant={}, max_by_tenant={}, default_max=100)


def queued(name: str, minute: int, quality: Quality = STANDARD, tenant: str = "a") -> QueuedSession:
    return QueuedSession(name, tenant, quality, T0 + timedelta(minutes=minute))


def pod(
    name: str,
    pool: str = "std",
    slots: int = 2,
    taken: tuple[int, ...] = (),
    *,
    ready: bool = True,
    draining: bool = False,
) -> PoolWorker:
    return PoolWorker(pool, name, slots, frozenset(taken), ready, draining)


# --- examples -----------------------------------------------------------------------------


def test_oldest_first_onto_free_slots_then_the_rest_wait() -> None:
    queue = [queued("c", 3), queued("a", 1), queued("b", 2)]
    result = assign(queue, POOLS, [pod("w", slots=2)], ROOMY)
    assert result.bindings == (Binding("a", "std", "w", 0), Binding("b", "std", "w", 1))
    assert result.waiting == {"c": WaitReason.NO_FREE_SLOT}


def test_ties_in_creation_time_break_by_name() -> None:
    result = assign([queued("b", 1), queued("a", 1)], POOLS, [pod("w", slots=1)], ROOMY)
    assert [b.session for b in result.bindings] == ["a"]


def test_taken_slots_are_never_handed_out_again() -> None:
    result = assign(
        [queued("a", 1), queued("b", 2)], POOLS, [pod("w", slots=3, taken=(0, 2))], ROOMY
    )
    assert result.bindings == (Binding("a", "std", "w", 1),)


def test_the_fullest_worker_is_filled_first() -> None:
    workers = [
        pod("empty", slots=4),
        pod("half", slots=4, taken=(0, 1)),
        pod("full", slots=1, taken=(0,)),
    ]
    result = assign([queued("a", 1), queued("b", 2), queued("c", 3)], POOLS, workers, ROOMY)
    assert [(b.pod, b.slot) for b in result.bindings] == [("half", 2), ("half", 3), ("empty", 0)]


def test_only_ready_undrained_workers_of_a_serving_pool_take_sessions() -> None:
    workers = [
        pod("starting", ready=False),
        pod("draining", draining=True),
        pod("pro-only", pool="pro"),
        pod("orphan", pool="deleted-pool"),
    ]
    result = assign([queued("a", 1)], POOLS, workers, ROOMY)
    assert result.bindings == ()
    assert result.waiting == {"a": WaitReason.NO_FREE_SLOT}


def test_a_tier_no_pool_serves_waits_with_its_reason_and_holds_no_one_back() -> None:
    queue = [queued("lite", 1, Quality.LITE), queued("s", 2)]
    result = assign(queue, POOLS, [pod("w")], ROOMY)
    assert result.waiting == {"lite": WaitReason.NO_POOL_FOR_TIER}
    assert [b.session for b in result.bindings] == ["s"]


def test_a_pool_with_no_workers_still_serves_its_tier() -> None:
    result = assign([queued("p", 1, PRO)], POOLS, [], ROOMY)
    assert result.waiting == {"p": WaitReason.NO_FREE_SLOT}


def test_a_full_tier_does_not_hold_back_another() -> None:
    queue = [queued("s1", 1), queued("s2", 2), queued("p1", 3, PRO)]
    result = assign(queue, POOLS, [pod("s", slots=1), pod("p", pool="pro")], ROOMY)
    assert [b.session for b in result.bindings] == ["s1", "p1"]
    assert result.waiting == {"s2": WaitReason.NO_FREE_SLOT}


def test_a_pool_serving_two_tiers_takes_both_in_one_order() -> None:
    pools = {"gpu": frozenset({STANDARD, PRO})}
    queue = [queued("p1", 1, PRO), queued("s1", 2), queued("p2", 3, PRO)]
    result = assign(queue, pools, [pod("w", pool="gpu", slots=2)], ROOMY)
    assert [b.session for b in result.bindings] == ["p1", "s1"]


def test_tenant_limit_skips_only_that_tenant() -> None:
    room = TenantRoom(held_by_tenant={"a": 1}, max_by_tenant={"a": 2, "b": 5})
    queue = [queued("a1", 1), queued("b1", 2, tenant="b"), queued("a2", 3)]
    result = assign(queue, POOLS, [pod("w", slots=4)], room)
    assert [b.session for b in result.bindings] == ["a1", "b1"]
    assert result.waiting == {"a2": WaitReason.TENANT_LIMIT}


def test_unknown_tenant_gets_the_default_limit() -> None:
    room = TenantRoom(held_by_tenant={}, max_by_tenant={})
    result = assign([queued("x1", 1), queued("x2", 2)], POOLS, [pod("w")], room)
    assert [b.session for b in result.bindings] == ["x1"]


def test_nothing_queued_binds_nothing() -> None:
    assert assign([], POOLS, [pod("w")], ROOMY) == Assignment((), {})


# --- invariants ---------------------------------------------------------------------------

TENANTS = ("a", "b", "c")


@st.composite
def situations(
    draw: st.DrawFn,
) -> tuple[list[QueuedSession], dict[str, frozenset[Quality]], list[PoolWorker], TenantRoom]:
    tiers = st.frozensets(st.sampled_from(Quality), min_size=1, max_size=2)
    pools = {f"pool{i}": draw(tiers) for i in range(draw(st.integers(0, 3)))}
    workers = []
    for index in range(draw(st.integers(0, 8))):
        slots = draw(st.integers(1, 4))
        workers.append(
            PoolWorker(
                pool=draw(st.sampled_from([*pools, "gone"])),
                pod=f"w{index}",
                slots=slots,
                taken=draw(st.frozensets(st.integers(0, slots - 1))),
                ready=draw(st.integers(0, 4)) > 0,
                draining=draw(st.integers(0, 4)) == 0,
            )
        )
    queue = [
        QueuedSession(
            name=f"s{index}",
            tenant=draw(st.sampled_from(TENANTS)),
            quality=draw(st.sampled_from(Quality)),
            created_at=T0 + timedelta(seconds=draw(st.integers(0, 5))),  # ties, often
        )
        for index in range(draw(st.integers(0, 20)))
    ]
    room = TenantRoom(
        held_by_tenant={t: draw(st.integers(0, 3)) for t in TENANTS},
        max_by_tenant={t: draw(st.integers(0, 6)) for t in TENANTS[:2]},
        default_max=draw(st.integers(0, 4)),
    )
    return draw(st.permutations(queue)), pools, workers, room


@settings(max_examples=600, deadline=None, database=None)
@given(situations())
def test_assignment_invariants(
    situation: tuple[
        list[QueuedSession], dict[str, frozenset[Quality]], list[PoolWorker], TenantRoom
    ],
) -> None:
    queue, pools, workers, room = situation
    result = assign(queue, pools, workers, room)
    sessions = {s.name: s for s in queue}
    pods = {w.pod: w for w in workers}
    bound = {b.session: b for b in result.bindings}

    # every queued session is either bound once or waits with a reason
    assert len(bound) == len(result.bindings)
    assert set(bound).isdisjoint(result.waiting)
    assert set(bound) | set(result.waiting) == set(sessions)
    # no slot bound twice, nor one already taken, nor one the worker does not have
    places = [(b.pod, b.slot) for b in result.bindings]
    assert len(places) == len(set(places))
    for b in result.bindings:
        w = pods[b.pod]
        assert b.pool == w.pool
        assert 0 <= b.slot < w.slots
        assert b.slot not in w.taken
        # only onto a ready, undrained worker of a pool serving the session's tier
        assert w.ready
        assert not w.draining
        assert sessions[b.session].quality in pools[w.pool]
    # the tenant limit is never exceeded
    per_tenant = Counter(sessions[name].tenant for name in bound)
    for tenant, count in per_tenant.items():
        limit = room.max_by_tenant.get(tenant, room.default_max)
        assert room.held_by_tenant.get(tenant, 0) + count <= max(limit, 0)
    ordered = sorted(queue, key=lambda s: (s.created_at, s.name))
    # a session waits for its tenant only when those of its tenant ahead of it fill the room
    for index, session in enumerate(ordered):
        if result.waiting.get(session.name) == WaitReason.TENANT_LIMIT:
            ahead = [s for s in ordered[:index] if s.tenant == session.tenant]
            room_left = room.max_by_tenant.get(session.tenant, room.default_max) - (
                room.held_by_tenant.get(session.tenant, 0)
            )
            admitted_ahead = [s for s in ahead if result.waiting.get(s.name) != "TenantLimit"]
            assert len(admitted_ahead) >= room_left
    # FIFO per tier: of the sessions the tenants let go, the bound ones are the oldest
    for quality in Quality:
        let_go = [
            s.name
            for s in ordered
            if s.quality == quality and result.waiting.get(s.name) != WaitReason.TENANT_LIMIT
        ]
        flags = [name in bound for name in let_go]
        assert flags == sorted(flags, reverse=True), f"{quality}: {let_go} {flags}"
    # the reasons are true: no pool serves the tier; or no serving slot is left free
    served = {q for tiers in pools.values() for q in tiers}
    used = Counter(b.pod for b in result.bindings)
    for name, reason in result.waiting.items():
        quality = sessions[name].quality
        assert (reason == WaitReason.NO_POOL_FOR_TIER) == (
            quality not in served and reason != WaitReason.TENANT_LIMIT
        )
        if reason == WaitReason.NO_FREE_SLOT:
            assert all(
                w.slots - len(w.taken) - used[w.pod] == 0
                for w in workers
                if w.pool in pools and quality in pools[w.pool] and w.ready and not w.draining
            )
