"""The state machine for a session bound to a pool worker's slot: it starts on the binding with
no pod of its own, never deletes the shared pod, ends when its worker says it left, and fails
`worker_lost` / `node_lost` when the worker or its node goes."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from avatar_crds.enums import EndReason, FailureReason, Phase
from avatar_crds.session import AvatarSessionStatus, Binding
from avatar_operator.machine import (
    ChargeTenant,
    Facts,
    RemoveFinalizer,
    Stage,
    SyncGrant,
    step,
)
from testbed import objects
from testbed.objects import LIMITS, T0
from testbed.objects import worker_pod_facts as pod

SLOT = Binding(pool="lite", pod="lite-x7k2p", slot=3)
BOUND = SLOT.model_dump(by_alias=True)
RUNNING: dict[str, Any] = {
    "phase": "running",
    "runningAt": T0,
    "startingAt": T0,
    "podName": SLOT.pod,
    "binding": BOUND,
    "deadlines": {"maxDurationAt": T0 + timedelta(seconds=600)},
    "worker": {"heartbeatAt": T0, "firstFrameAt": T0},
}
ENDING: dict[str, Any] = {**RUNNING, "phase": "ending", "reason": "idle_timeout", "endingAt": T0}


def facts(status: dict[str, Any] | None = None, **changes: Any) -> Facts:
    return Facts(
        spec=objects.SPEC,
        status=AvatarSessionStatus.model_validate(status or {}),
        limits=LIMITS,
        **{"webhooks_enabled": True, **changes},
    )


def worker() -> Any:
    return pod(name=SLOT.pod)


def test_a_chosen_slot_starts_the_session_with_one_write_and_no_pod_of_its_own() -> None:
    decision = step(Phase.QUEUED, facts({"phase": "queued"}, binding=SLOT, pod=worker()), T0)
    assert decision.phase is Phase.STARTING
    assert decision.status.binding == SLOT
    assert decision.status.pod_name == SLOT.pod
    assert decision.actions == (SyncGrant(SLOT.pool, SLOT.pod),)
    # The worker is told (its grant rewritten) only once the binding is stored.
    assert decision.actions_at(Stage.BEFORE_STATUS) == ()
    assert decision.wake_at == T0 + LIMITS.start_timeout


def test_a_slot_free_at_once_queues_and_starts_the_session_in_one_write() -> None:
    decision = step(Phase.CREATED, facts({}, binding=SLOT, pod=worker()), T0)
    assert decision.phase is Phase.STARTING
    assert decision.status.queued_at == decision.status.starting_at == T0
    assert decision.status.binding == SLOT
    assert decision.actions == (SyncGrant(SLOT.pool, SLOT.pod),)
    assert decision.event is not None
    assert decision.event[1] == "Starting"  # one Event for the one write
    queued, started = decision.status.pending_webhooks
    assert (queued.event, started.event) == ("session.queued", "session.started")


def test_without_a_slot_a_queued_session_in_a_pool_namespace_waits() -> None:
    decision = step(Phase.QUEUED, facts({"phase": "queued"}), T0)
    assert decision.phase is Phase.QUEUED
    assert decision.actions == ()


def test_ending_does_not_delete_the_shared_pod_and_waits_for_the_worker_to_leave() -> None:
    decision = step(Phase.ENDING, facts(ENDING, pod=worker()), T0 + timedelta(seconds=1))
    assert decision.phase is Phase.ENDING
    assert decision.actions == ()
    assert decision.wake_at == T0 + LIMITS.finalize_timeout


def test_running_to_ending_leaves_the_pod_alone() -> None:
    status = {**RUNNING, "deadlines": {"maxDurationAt": T0}}
    decision = step(Phase.RUNNING, facts(status, pod=worker()), T0 + timedelta(seconds=1))
    assert decision.phase is Phase.ENDING
    assert decision.status.reason is EndReason.MAX_DURATION_REACHED
    assert decision.actions == ()  # no action on a pod exists: the pod is the pool's


def test_the_worker_leaving_ends_the_session_and_frees_the_slot() -> None:
    left = {**ENDING, "worker": {**ENDING["worker"], "leftAt": T0 + timedelta(seconds=1)}}
    decision = step(Phase.ENDING, facts(left, pod=worker()), T0 + timedelta(seconds=1))
    assert decision.phase is Phase.ENDED
    assert decision.status.reason is EndReason.IDLE_TIMEOUT
    assert SyncGrant(SLOT.pool, SLOT.pod) in decision.actions
    assert any(isinstance(a, ChargeTenant) for a in decision.actions)


def test_a_worker_that_never_confirms_is_given_up_on_after_the_finalize_timeout() -> None:
    decision = step(Phase.ENDING, facts(ENDING, pod=worker()), T0 + LIMITS.finalize_timeout)
    assert decision.phase is Phase.ENDED
    assert decision.status.message is not None
    assert SLOT.pod in decision.status.message
    assert SyncGrant(SLOT.pool, SLOT.pod) in decision.actions


def test_a_gone_worker_fails_each_of_its_sessions_worker_lost() -> None:
    for gone in (None, pod(name=SLOT.pod, phase="Failed"), pod(name=SLOT.pod, deleting=True)):
        decision = step(Phase.RUNNING, facts(RUNNING, pod=gone), T0 + timedelta(seconds=1))
        assert decision.phase is Phase.FAILED
        assert decision.status.reason is FailureReason.WORKER_LOST
        assert SLOT.pod in (decision.status.message or "")


def test_a_gone_node_fails_the_session_node_lost() -> None:
    decision = step(
        Phase.RUNNING, facts(RUNNING, pod=worker(), node_present=False), T0 + timedelta(seconds=1)
    )
    assert decision.phase is Phase.FAILED
    assert decision.status.reason is FailureReason.NODE_LOST


def test_a_terminal_pooled_session_never_touches_the_pod_and_is_deleted_after_its_ttl() -> None:
    ended = {**ENDING, "phase": "ended", "finishedAt": T0}
    kept = step(Phase.ENDED, facts(ended, pod=worker()), T0 + timedelta(seconds=1))
    assert kept.actions == ()
    expired = step(Phase.ENDED, facts(ended, pod=worker()), T0 + LIMITS.terminal_ttl)
    assert [type(a).__name__ for a in expired.actions] == ["DeleteSession"]
    deleting = step(Phase.ENDED, facts(ended, pod=worker(), deleting=True), T0)
    assert deleting.actions == (RemoveFinalizer(),)


def test_a_worker_that_left_the_room_on_its_own_fails_the_session() -> None:
    left = {**RUNNING, "worker": {**RUNNING["worker"], "leftAt": T0}}
    decision = step(Phase.RUNNING, facts(left, pod=worker()), T0 + timedelta(seconds=1))
    assert decision.phase is Phase.FAILED
    assert decision.status.reason is FailureReason.WORKER_LOST
    assert SyncGrant(SLOT.pool, SLOT.pod) in decision.actions
