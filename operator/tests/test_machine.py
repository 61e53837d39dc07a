"""The state machine, exhaustively: every legal transition, every illegal one, every branch.
Sessions run on a pool worker's slot; `test_machine_pooled.py` has what is particular to
sharing the worker (the binding write, leaving, the shared pod never deleted)."""

from __future__ import annotations

import itertools
from datetime import datetime, timedelta
from typing import Any

import pytest

from avatar_crds.enums import EndReason, FailureReason, Phase, WebhookEvent
from avatar_crds.redact import REDACTED
from avatar_crds.session import (
    MESSAGE_MAX_LENGTH,
    AvatarSessionStatus,
    Binding,
    WorkerStatus,
)
from avatar_operator.machine import (
    LEGAL_TRANSITIONS,
    ChargeTenant,
    Decision,
    DeleteSession,
    Facts,
    IllegalTransitionError,
    RemoveFinalizer,
    Stage,
    check_transition,
    step,
)
from avatar_operator.observe import PodFacts
from testbed import objects
from testbed.objects import LIMITS, T0
from testbed.objects import worker_pod_facts as pod

SPEC = objects.SPEC.model_copy(update={"idle_timeout_seconds": 30, "max_duration_seconds": 600})
SLOT = Binding(pool="p", pod="s-worker", slot=0)  # `pod()` is that worker


def facts(status: dict[str, Any] | None = None, **changes: Any) -> Facts:
    """The tenant has a webhook endpoint unless `webhooks_enabled=False`."""
    spec = changes.pop("spec", SPEC)
    return Facts(
        spec=spec,
        status=AvatarSessionStatus.model_validate(status or {}),
        limits=LIMITS,
        **{"webhooks_enabled": True, **changes},
    )


def announced(decision: Decision) -> list[WebhookEvent]:
    """The webhook events the decision's status queues for delivery."""
    return [pending.event for pending in decision.status.pending_webhooks]


STARTING = {
    "phase": "starting",
    "podName": SLOT.pod,
    "binding": SLOT.model_dump(by_alias=True),
    "startingAt": T0,
    "deadlines": {"startBy": T0 + timedelta(seconds=60)},
}
RUNNING = {
    "phase": "running",
    "podName": SLOT.pod,
    "binding": SLOT.model_dump(by_alias=True),
    "runningAt": T0,
    "deadlines": {"maxDurationAt": T0 + timedelta(seconds=600)},
    "worker": {"heartbeatAt": T0, "firstFrameAt": T0},
}


def kinds(actions: tuple[object, ...]) -> list[type]:
    return [type(action) for action in actions]


# --- transitions ---------------------------------------------------------------------------


@pytest.mark.parametrize(("old", "new"), list(itertools.product(Phase, Phase)))
def test_every_pair_is_legal_or_rejected(old: Phase, new: Phase) -> None:
    if new == old or new in LEGAL_TRANSITIONS[old]:
        check_transition(old, new)
    else:
        with pytest.raises(IllegalTransitionError):
            check_transition(old, new)


def test_terminal_phases_have_no_way_out() -> None:
    for phase in (Phase.ENDED, Phase.FAILED, Phase.CANCELED):
        assert LEGAL_TRANSITIONS[phase] == frozenset()


def test_every_legal_transition_is_reachable_by_the_machine() -> None:
    seen: set[tuple[Phase, Phase]] = set()
    scenarios = [
        (None, facts()),
        (None, facts(deleting=True)),
        (None, facts(binding=SLOT, pod=pod())),
        (Phase.QUEUED, facts({"phase": "queued"}, binding=SLOT, pod=pod())),
        (Phase.QUEUED, facts({"phase": "queued"}, deleting=True)),
        (Phase.STARTING, facts({**STARTING, "worker": {"firstFrameAt": T0}}, pod=pod())),
        (Phase.STARTING, facts(STARTING, pod=pod(), deleting=True)),
        (Phase.STARTING, facts(STARTING, pod=pod(phase="Failed"))),
        (Phase.RUNNING, facts(RUNNING, pod=pod(), deleting=True)),
        (Phase.RUNNING, facts(RUNNING, pod=None)),
        (Phase.ENDING, facts({**RUNNING, "phase": "ending", "reason": "user_ended"})),
    ]
    for phase, f in scenarios:
        seen.add((phase or Phase.CREATED, step(phase, f, T0).phase))
    legal = {(old, new) for old, targets in LEGAL_TRANSITIONS.items() for new in targets}
    missing = legal - seen - {(Phase.QUEUED, Phase.FAILED)}  # reserved for binding failures
    assert not missing, missing


# --- created / queued ----------------------------------------------------------------------


def test_new_session_is_queued_and_announced() -> None:
    d = step(None, facts(), T0)
    assert d.phase is Phase.QUEUED
    assert d.status.queued_at == T0
    assert announced(d) == [WebhookEvent.QUEUED]
    assert d.event is not None
    assert d.event[1] == "Queued"


def test_queued_waits_without_a_wakeup_until_a_slot_is_chosen() -> None:
    d = step(Phase.QUEUED, facts({"phase": "queued"}), T0)
    assert d.phase is Phase.QUEUED
    assert d.actions == ()
    assert d.wake_at is None


def test_a_chosen_slot_starts_the_session_with_a_start_deadline() -> None:
    d = step(Phase.QUEUED, facts({"phase": "queued"}, binding=SLOT, pod=pod()), T0)
    assert d.phase is Phase.STARTING
    assert d.status.deadlines is not None
    assert d.status.deadlines.start_by == T0 + LIMITS.start_timeout
    assert d.wake_at == T0 + LIMITS.start_timeout


@pytest.mark.parametrize("how", ["deleting", "end_request"])
def test_cancel_before_running(how: str) -> None:
    spec = SPEC.model_copy(update={"end_requested_at": T0}) if how == "end_request" else SPEC
    d = step(Phase.QUEUED, facts({"phase": "queued"}, spec=spec, deleting=how == "deleting"), T0)
    assert d.phase is Phase.CANCELED
    assert d.status.reason == "user_canceled"
    assert d.status.finished_at == T0


# --- starting ------------------------------------------------------------------------------


def test_first_frame_makes_it_running_with_absolute_deadlines() -> None:
    f = facts({**STARTING, "worker": {"firstFrameAt": T0}}, pod=pod())
    now = T0 + timedelta(seconds=3)
    d = step(Phase.STARTING, f, now)
    assert d.phase is Phase.RUNNING
    assert d.status.running_at == now
    assert d.status.deadlines is not None
    assert d.status.deadlines.max_duration_at == now + timedelta(seconds=600)
    assert d.status.deadlines.idle_at == now + timedelta(seconds=30)
    assert announced(d) == [WebhookEvent.FIRST_FRAME]
    assert d.wake_at == now + timedelta(seconds=20)  # the heartbeat check comes first


@pytest.mark.parametrize(
    ("pod_facts", "node_present", "worker", "reason"),
    [
        (None, True, None, FailureReason.WORKER_LOST),
        (pod(deleting=True), True, None, FailureReason.WORKER_LOST),
        (pod(), False, None, FailureReason.NODE_LOST),
        (pod(deleting=True), False, None, FailureReason.NODE_LOST),
        (pod(phase="Failed", exit_message="boom"), True, None, FailureReason.WORKER_LOST),
        (pod(), True, {"failure": {"reason": "transport_auth_failed"}}, "transport_auth_failed"),
    ],
)
def test_worker_breakage_fails_the_session(
    pod_facts: PodFacts | None, node_present: bool, worker: Any, reason: str
) -> None:
    status = {**STARTING, **({"worker": worker} if worker else {})}
    d = step(Phase.STARTING, facts(status, pod=pod_facts, node_present=node_present), T0)
    assert d.phase is Phase.FAILED
    assert d.status.reason == reason
    assert announced(d) == [WebhookEvent.FAILED]
    assert d.event is not None
    assert d.event[0] == "Warning"


def test_no_first_frame_before_the_start_deadline_times_out_naming_the_worker() -> None:
    late = T0 + timedelta(seconds=61)
    d = step(Phase.STARTING, facts(STARTING, pod=pod()), late)
    assert d.status.reason == FailureReason.START_TIMEOUT
    assert d.status.message is not None
    assert SLOT.pod in d.status.message


# --- messages: redacted, and short enough for the CRD -----------------------------------------

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIiLCJ2aWRlbyI6e319.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
LOG_TAIL = (
    "Traceback (most recent call last):\n"
    + "  frame\n" * 400
    + f'{{"event": "join failed", "error": "401 invalid token {TOKEN}"}}\n'
    + "RuntimeError: worker died"
)


@pytest.mark.parametrize(
    ("phase", "status", "changes", "now"),
    [
        (Phase.RUNNING, RUNNING, {"pod": pod(phase="Failed", exit_message=LOG_TAIL)}, T0),
        (Phase.STARTING, STARTING, {"pod": pod(phase="Failed", exit_message=LOG_TAIL)}, T0),
        (
            Phase.RUNNING,
            {**RUNNING, "worker": {"failure": {"reason": "room_unreachable", "message": TOKEN}}},
            {"pod": pod()},
            T0,
        ),
    ],
    ids=["running_pod_failed", "starting_pod_failed", "worker_report"],
)
def test_a_failure_message_is_redacted_and_fits_the_crd(
    phase: Phase, status: dict[str, Any], changes: dict[str, Any], now: datetime
) -> None:
    """A 3,000-character log tail quoting the worker token: the status keeps its head and its
    end, without the token, within the CRD's limit (a longer one is refused whole, 422)."""
    d = step(phase, facts(status, **changes), now)
    assert d.phase is Phase.FAILED
    message = d.status.message
    assert message is not None
    assert len(message) <= MESSAGE_MAX_LENGTH
    assert TOKEN not in message
    assert d.event is not None
    assert TOKEN not in d.event[2]
    assert message in d.event[2]
    AvatarSessionStatus.model_validate(d.status.to_k8s())  # the CRD's own limits


def test_a_clipped_message_keeps_what_failed_and_how_it_ended() -> None:
    d = step(Phase.RUNNING, facts(RUNNING, pod=pod(phase="Failed", exit_message=LOG_TAIL)), T0)
    message = d.status.message
    assert message is not None
    assert len(message) == MESSAGE_MAX_LENGTH
    assert message.startswith(f"worker {SLOT.pod} exited: Traceback")
    assert message.endswith(f'401 invalid token {REDACTED}"}}\nRuntimeError: worker died')


def test_a_short_message_is_kept_as_it_is() -> None:
    d = step(Phase.RUNNING, facts(RUNNING, pod=pod(phase="Failed", exit_message="OOMKilled")), T0)
    assert d.status.message == f"worker {SLOT.pod} exited: OOMKilled"


def test_starting_before_the_deadline_just_waits_for_it() -> None:
    d = step(Phase.STARTING, facts(STARTING, pod=pod(phase="Pending")), T0)
    assert d.phase is Phase.STARTING
    assert d.wake_at == T0 + timedelta(seconds=60)


# --- running -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("seconds", "changes", "reason"),
    [
        (5, {"deleting": True}, EndReason.USER_ENDED),
        (5, {"spec": SPEC.model_copy(update={"end_requested_at": T0})}, EndReason.USER_ENDED),
        (30, {}, EndReason.IDLE_TIMEOUT),
        (5, {"minutes_exhausted": True}, EndReason.MINUTES_EXHAUSTED),
    ],
)
def test_running_ends_for_each_reason(seconds: int, changes: Any, reason: EndReason) -> None:
    now = T0 + timedelta(seconds=seconds)
    status = {**RUNNING, "worker": {"heartbeatAt": now, "firstFrameAt": T0}}
    d = step(Phase.RUNNING, facts(status, pod=pod(), **changes), now)
    assert d.phase is Phase.ENDING
    assert d.status.reason == reason
    assert d.actions == ()  # the worker leaves on seeing `ending`; its pod is the pool's


def test_max_duration() -> None:
    now = T0 + timedelta(seconds=600)
    spec = SPEC.model_copy(update={"idle_timeout_seconds": None})
    status = {**RUNNING, "worker": {"heartbeatAt": now}}
    d = step(Phase.RUNNING, facts(status, pod=pod(), spec=spec), now)
    assert d.status.reason == EndReason.MAX_DURATION_REACHED


def test_audio_and_keep_alive_push_the_idle_deadline() -> None:
    now = T0 + timedelta(seconds=40)
    spec = SPEC.model_copy(update={"keep_alive_at": T0 + timedelta(seconds=25)})
    worker = {"heartbeatAt": now, "lastAudioAt": T0 + timedelta(seconds=20)}
    d = step(Phase.RUNNING, facts({**RUNNING, "worker": worker}, pod=pod(), spec=spec), now)
    assert d.phase is Phase.RUNNING
    assert d.status.deadlines is not None
    assert d.status.deadlines.idle_at == T0 + timedelta(seconds=55)
    assert d.wake_at == T0 + timedelta(seconds=55)


def test_disabled_idle_timeout_never_fires() -> None:
    now = T0 + timedelta(seconds=500)
    spec = SPEC.model_copy(update={"idle_timeout_seconds": None})
    status = {**RUNNING, "worker": {"heartbeatAt": now}}
    d = step(Phase.RUNNING, facts(status, pod=pod(), spec=spec), now)
    assert d.phase is Phase.RUNNING
    assert d.status.deadlines is not None
    assert d.status.deadlines.idle_at is None


def test_lost_heartbeat_fails_as_worker_lost() -> None:
    d = step(Phase.RUNNING, facts(RUNNING, pod=pod()), T0 + timedelta(seconds=20))
    assert d.phase is Phase.FAILED
    assert d.status.reason == FailureReason.WORKER_LOST


def test_usage_follows_the_worker_report() -> None:
    worker = {"heartbeatAt": T0, "billableSeconds": 12.5}
    d = step(Phase.RUNNING, facts({**RUNNING, "worker": worker}, pod=pod()), T0)
    assert d.status.usage is not None
    assert d.status.usage.billable_seconds == 12.5


# --- ending and terminal -------------------------------------------------------------------

ENDING = {**RUNNING, "phase": "ending", "reason": "idle_timeout", "endingAt": T0}


def test_ending_becomes_ended_when_the_pod_is_gone_and_charges_once() -> None:
    status = {**ENDING, "worker": {"billableSeconds": 42.0}}
    d = step(Phase.ENDING, facts(status, pod=None), T0 + timedelta(seconds=2))
    assert d.phase is Phase.ENDED
    assert d.status.reason == EndReason.IDLE_TIMEOUT
    assert ChargeTenant(42.0) in d.actions
    assert announced(d) == [WebhookEvent.ENDED]


FAILED = {"phase": "failed", "reason": "worker_lost", "finishedAt": T0}


def test_the_session_is_let_go_only_after_its_status_is_written() -> None:
    """Minutes are charged before the status write; the finalizer and the session itself only
    after it, so the final status and its webhooks are never lost."""
    deleted = step(Phase.FAILED, facts(FAILED, deleting=True), T0)
    assert deleted.actions_at(Stage.BEFORE_STATUS) == ()
    assert deleted.actions_at(Stage.AFTER_STATUS) == (RemoveFinalizer(),)
    expired = step(Phase.FAILED, facts(FAILED), T0 + LIMITS.terminal_ttl)
    assert expired.actions_at(Stage.AFTER_STATUS) == (DeleteSession(),)
    billed = {**ENDING, "worker": {"billableSeconds": 42.0}}
    charged = step(Phase.ENDING, facts(billed, pod=None), T0 + timedelta(seconds=2))
    assert charged.actions_at(Stage.BEFORE_STATUS) == (ChargeTenant(42.0),)


def test_terminal_sessions_expire_after_the_ttl() -> None:
    assert step(Phase.FAILED, facts(FAILED), T0).wake_at == T0 + LIMITS.terminal_ttl
    assert DeleteSession() in step(Phase.FAILED, facts(FAILED), T0 + LIMITS.terminal_ttl).actions


def test_the_machine_is_idempotent() -> None:
    f = facts(RUNNING, pod=pod())
    first = step(Phase.RUNNING, f, T0 + timedelta(seconds=1))
    again = step(
        Phase.RUNNING,
        Facts(spec=SPEC, status=first.status, limits=LIMITS, pod=pod()),
        T0 + timedelta(seconds=1),
    )
    assert again.status == first.status
    assert again.actions == ()


def test_worker_status_is_never_changed_by_the_machine() -> None:
    worker = WorkerStatus(frames=7, billable_seconds=1.0, heartbeat_at=T0)
    status = AvatarSessionStatus.model_validate({**RUNNING}).model_copy(update={"worker": worker})
    d = step(Phase.RUNNING, Facts(spec=SPEC, status=status, limits=LIMITS, pod=pod()), T0)
    assert d.status.worker == worker


# --- webhooks ------------------------------------------------------------------------------


def test_a_transition_queues_its_webhook_with_the_phase_and_the_time() -> None:
    now = T0 + timedelta(seconds=2)
    d = step(Phase.QUEUED, facts({"phase": "queued", "queuedAt": T0}, binding=SLOT, pod=pod()), now)
    assert d.phase is Phase.STARTING
    [pending] = d.status.pending_webhooks
    assert (pending.event, pending.phase, pending.occurred_at) == (
        WebhookEvent.STARTED,
        Phase.STARTING,
        now,
    )


def test_webhooks_stay_in_the_status_until_delivered() -> None:
    queued = step(None, facts(), T0)
    started = step(Phase.QUEUED, facts(queued.status.to_k8s(), binding=SLOT, pod=pod()), T0)
    assert announced(started) == [WebhookEvent.QUEUED, WebhookEvent.STARTED]
    done = frozenset({(WebhookEvent.QUEUED, "", "")})
    later = step(Phase.STARTING, facts(started.status.to_k8s(), pod=pod(), webhooks_done=done), T0)
    assert announced(later) == [WebhookEvent.STARTED]


def test_no_webhooks_without_an_endpoint() -> None:
    assert announced(step(None, facts(webhooks_enabled=False), T0)) == []


def test_a_terminal_session_stays_until_its_webhooks_are_out() -> None:
    failed = {"event": "session.failed", "phase": "failed", "occurredAt": T0}
    pending = {**FAILED, "pendingWebhooks": [failed]}
    expired = T0 + LIMITS.terminal_ttl
    waiting = step(Phase.FAILED, facts(pending), expired)
    assert DeleteSession() not in waiting.actions
    assert waiting.wake_at is None  # the end of the delivery brings it back, not a timer
    done = frozenset({(WebhookEvent.FAILED, "", "")})
    delivered = step(Phase.FAILED, facts(pending, webhooks_done=done), expired)
    assert DeleteSession() in delivered.actions
    # Deleted by the customer: the finalizer waits for the delivery, up to the finalize timeout.
    early = step(Phase.FAILED, facts(pending, deleting=True), T0)
    assert RemoveFinalizer() not in early.actions
    assert early.wake_at == T0 + LIMITS.finalize_timeout
    late = step(Phase.FAILED, facts(pending, deleting=True), T0 + LIMITS.finalize_timeout)
    assert late.actions == (RemoveFinalizer(),)
