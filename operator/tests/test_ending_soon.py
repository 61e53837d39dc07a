"""The warning before a cutoff: the pure rule (`ending_soon.warning`) and the machine around it
(status.endingSoon, the session.ending_soon webhook once per cutoff, the wake-up that makes it
on time)."""

from __future__ import annotations

from dataclasses import replace
from datetime import datetime, timedelta
from typing import Any

import pytest

from avatar_crds.enums import EndReason, Phase, WebhookEvent
from avatar_crds.session import AvatarSession, AvatarSessionStatus, Deadlines, EndingSoon
from avatar_operator.ending_soon import CutoffWarning, warning
from avatar_operator.machine import Decision, Facts, step, webhook_identity
from avatar_operator.webhooks import event_id, payload
from testbed.objects import LIMITS, SPEC, T0, session_manifest
from testbed.objects import worker_pod_facts as pod

LEAD = timedelta(seconds=10)
IDLE = 30
MAX = 600
SESSION_SPEC = SPEC.model_copy(update={"idle_timeout_seconds": IDLE, "max_duration_seconds": MAX})
IDLE_AT = T0 + timedelta(seconds=IDLE)
MAX_AT = T0 + timedelta(seconds=MAX)
DEADLINES = Deadlines(idle_at=IDLE_AT, max_duration_at=MAX_AT)


def at(seconds: float) -> datetime:
    return T0 + timedelta(seconds=seconds)


# --- the pure rule -------------------------------------------------------------------------


def test_before_the_window_there_is_no_warning_and_a_time_to_look_again() -> None:
    assert warning(SESSION_SPEC, DEADLINES, at(5), LEAD) == CutoffWarning(None, IDLE_AT - LEAD)


@pytest.mark.parametrize("now", [at(IDLE - 10), at(IDLE - 0.5), at(IDLE)])
def test_inside_the_window_the_warning_names_the_cutoff(now: datetime) -> None:
    expected = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=IDLE_AT)
    assert warning(SESSION_SPEC, DEADLINES, now, LEAD) == CutoffWarning(expected, None)


def test_the_earlier_cutoff_is_the_one_warned_of_max_duration_on_a_tie() -> None:
    later_idle = Deadlines(idle_at=at(900), max_duration_at=MAX_AT)
    decided = warning(SESSION_SPEC, later_idle, at(MAX - 5), LEAD)
    assert decided.ending_soon == EndingSoon(reason=EndReason.MAX_DURATION_REACHED, at=MAX_AT)
    tie = Deadlines(idle_at=MAX_AT, max_duration_at=MAX_AT)
    decided = warning(SESSION_SPEC, tie, at(MAX - 5), LEAD)
    assert decided.ending_soon is not None
    assert decided.ending_soon.reason is EndReason.MAX_DURATION_REACHED


def test_nothing_is_warned_of_when_disabled_or_without_deadlines() -> None:
    assert warning(SESSION_SPEC, DEADLINES, at(IDLE - 1), timedelta(0)) == CutoffWarning(None, None)
    assert warning(SESSION_SPEC, Deadlines(), at(IDLE - 1), LEAD) == CutoffWarning(None, None)
    no_idle = SESSION_SPEC.model_copy(update={"idle_timeout_seconds": None})
    only_max = warning(no_idle, DEADLINES, at(IDLE - 1), LEAD)
    assert only_max == CutoffWarning(None, MAX_AT - LEAD)


def test_a_cutoff_no_longer_than_the_warning_is_never_warned_of() -> None:
    # Every keep-alive would land inside the window and warn again: none at all instead.
    short = SESSION_SPEC.model_copy(update={"idle_timeout_seconds": 10, "max_duration_seconds": 10})
    deadlines = Deadlines(idle_at=at(10), max_duration_at=at(10))
    assert warning(short, deadlines, at(5), LEAD) == CutoffWarning(None, None)


# --- in the machine ------------------------------------------------------------------------


def running(**status: Any) -> dict[str, Any]:
    return {
        "phase": "running",
        "runningAt": T0,
        "deadlines": {"maxDurationAt": MAX_AT, "idleAt": IDLE_AT},
        "worker": {"heartbeatAt": T0, "firstFrameAt": T0},
        **status,
    }


def step_at(
    now: datetime, status: dict[str, Any], phase: Phase = Phase.RUNNING, **facts: Any
) -> Decision:
    spec = facts.pop("spec", SESSION_SPEC)
    # Alive throughout: the heartbeat is never what ends it here.
    body = AvatarSessionStatus.model_validate(status)
    if body.worker is not None:
        body.worker.heartbeat_at = now
    return step(
        phase,
        Facts(
            spec=spec,
            status=body,
            limits=replace(LIMITS, ending_soon=LEAD),
            pod=pod(),
            webhooks_enabled=True,
            **facts,
        ),
        now,
    )


def warnings(decision: Decision) -> list[EndingSoon | None]:
    return [
        p.ending_soon
        for p in decision.status.pending_webhooks
        if p.event is WebhookEvent.ENDING_SOON
    ]


def test_the_machine_wakes_when_the_window_opens_then_warns_once() -> None:
    early = step_at(at(5), running())
    assert early.status.ending_soon is None
    assert early.wake_at == IDLE_AT - LEAD
    warned = step_at(IDLE_AT - LEAD, running())
    expected = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=IDLE_AT)
    assert warned.status.ending_soon == expected
    assert warnings(warned) == [expected]
    assert warned.phase is Phase.RUNNING
    assert warned.wake_at == IDLE_AT  # the cutoff itself is next
    # Looked at again (any change, or a restart): the same warning, not a second webhook.
    again = step_at(at(IDLE - 5), warned.status.to_k8s())
    assert again.status.ending_soon == expected
    assert warnings(again) == [expected]  # still the one, undelivered
    delivered = frozenset(webhook_identity(p) for p in warned.status.pending_webhooks)
    after = step_at(at(IDLE - 5), warned.status.to_k8s(), webhooks_done=delivered)
    assert warnings(after) == []
    assert after.status.ending_soon == expected


def test_a_keep_alive_clears_the_warning_and_a_later_approach_warns_again() -> None:
    warned = step_at(at(IDLE - 5), running())
    assert warned.status.ending_soon is not None
    kept_alive = SESSION_SPEC.model_copy(update={"keep_alive_at": at(IDLE - 2)})
    cleared = step_at(at(IDLE - 2), warned.status.to_k8s(), spec=kept_alive)
    assert cleared.status.ending_soon is None
    new_cutoff = at(IDLE - 2 + IDLE)
    assert cleared.status.deadlines is not None
    assert cleared.status.deadlines.idle_at == new_cutoff
    assert cleared.wake_at == new_cutoff - LEAD
    # The old cutoff passes: the session goes on.
    past = step_at(IDLE_AT + timedelta(seconds=1), cleared.status.to_k8s(), spec=kept_alive)
    assert past.phase is Phase.RUNNING
    assert past.status.ending_soon is None
    again = step_at(new_cutoff - LEAD, cleared.status.to_k8s(), spec=kept_alive)
    second = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=new_cutoff)
    assert again.status.ending_soon == second
    assert warnings(again)[-1] == second
    # An undelivered warning of the old cutoff gives way to the new one (one per key).
    assert warnings(again) == [second]


def test_speech_moves_the_idle_cutoff_away_like_a_keep_alive() -> None:
    warned = step_at(at(IDLE - 5), running())
    spoke = warned.status.to_k8s()
    spoke["worker"]["lastAudioAt"] = at(IDLE - 3)
    cleared = step_at(at(IDLE - 3), spoke)
    assert cleared.status.ending_soon is None


def test_the_warning_is_given_only_while_running() -> None:
    starting = {
        "phase": "starting",
        "startingAt": T0,
        "deadlines": {"startBy": at(60), "idleAt": IDLE_AT, "maxDurationAt": MAX_AT},
    }
    decision = step_at(at(IDLE - 5), starting, phase=Phase.STARTING)
    assert decision.status.ending_soon is None
    assert warnings(decision) == []


def test_the_warning_is_on_the_first_frame_s_timers() -> None:
    starting = {
        "phase": "starting",
        "startingAt": T0,
        "deadlines": {"startBy": at(60)},
        "worker": {"heartbeatAt": T0, "firstFrameAt": T0},
    }
    decision = step_at(T0, starting, phase=Phase.STARTING)
    assert decision.phase is Phase.RUNNING
    assert decision.wake_at == IDLE_AT - LEAD


def test_an_ending_soon_payload_says_which_cutoff_and_when() -> None:
    warned = step_at(at(IDLE - 5), running())
    [pending] = warned.status.pending_webhooks
    session = AvatarSession.model_validate(session_manifest())
    body = payload(pending, session)
    assert body["type"] == "session.ending_soon"
    assert body["data"]["reason"] == "idle_timeout"
    assert body["data"]["at"] == IDLE_AT.isoformat().replace("+00:00", "Z")
    assert body["data"]["status"] == "running"
    moved = pending.model_copy(
        update={"ending_soon": EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=at(99))}
    )
    assert event_id("s", moved) != event_id("s", pending)  # a new warning, a new id
