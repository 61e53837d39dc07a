"""A session's conditions: what each phase reports, and when lastTransitionTime moves."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

import pytest

from avatar_crds.enums import CancelReason, EndReason, FailureReason, Phase
from avatar_crds.session import (
    CONDITION_REASON,
    AvatarSessionStatus,
    Binding,
    Condition,
    WorkerStatus,
)
from avatar_operator.conditions import ADMITTED, READY, Observed, camel_case, merge, observe
from avatar_operator.machine import Facts, step
from testbed.objects import LIMITS, SPEC, T0, worker_pod_facts

SLOT = Binding(pool="p", pod="s-worker", slot=0)

LATER = T0 + timedelta(minutes=5)
POD = worker_pod_facts()


def by_type(conditions: list[Condition]) -> dict[str, Condition]:
    return {condition.type: condition for condition in conditions}


def status_of(phase: Phase, **fields: Any) -> AvatarSessionStatus:
    return AvatarSessionStatus.model_validate({"phase": phase, **fields})


@pytest.mark.parametrize(
    ("status", "admitted", "ready"),
    [
        (status_of(Phase.QUEUED), ("False", "WaitingForSlot"), ("False", "NotAdmitted")),
        (
            status_of(Phase.STARTING, startingAt=T0),
            ("True", "SlotBound"),
            ("False", "WaitingForFirstFrame"),
        ),
        (
            status_of(Phase.RUNNING, startingAt=T0),
            ("True", "SlotBound"),
            ("True", "FirstFramePublished"),
        ),
        (
            status_of(Phase.ENDING, startingAt=T0, reason="idle_timeout"),
            ("True", "SlotBound"),
            ("False", "IdleTimeout"),
        ),
        (
            status_of(Phase.FAILED, startingAt=T0, reason="worker_lost", message="no heartbeat"),
            ("True", "SlotBound"),
            ("False", "WorkerLost"),
        ),
        (
            status_of(Phase.CANCELED, reason="user_canceled"),
            ("False", "Finished"),
            ("False", "UserCanceled"),
        ),
    ],
)
def test_each_phase_reports_admitted_and_ready(
    status: AvatarSessionStatus, admitted: tuple[str, str], ready: tuple[str, str]
) -> None:
    got_admitted, got_ready = observe(status)
    assert (got_admitted.type, got_admitted.status, got_admitted.reason) == (ADMITTED, *admitted)
    assert (got_ready.type, got_ready.status, got_ready.reason) == (READY, *ready)
    # Whatever is reported must be accepted by the CRD's schema.
    merged = merge([], (got_admitted, got_ready), now=T0, generation=1)
    assert all(AvatarSessionStatus(conditions=merged).conditions)


def test_a_failure_message_is_the_ready_message() -> None:
    status = status_of(Phase.FAILED, startingAt=T0, reason="worker_lost", message="no heartbeat")
    assert observe(status)[1].message == "no heartbeat"


def test_every_session_reason_is_a_valid_condition_reason() -> None:
    for reason in [*EndReason, *FailureReason, *CancelReason, *Phase]:
        assert re.fullmatch(CONDITION_REASON, camel_case(str(reason))), reason


def test_transition_time_moves_only_when_the_status_changes() -> None:
    first = merge(
        [], (Observed(READY, "False", "WaitingForFirstFrame", "starting"),), now=T0, generation=1
    )
    assert first[0].last_transition_time == T0

    # Same status, new reason, message and generation: not a transition.
    same = merge(first, (Observed(READY, "False", "IdleTimeout", "idle"),), now=LATER, generation=2)
    assert same[0].last_transition_time == T0
    assert (same[0].reason, same[0].message, same[0].observed_generation) == (
        "IdleTimeout",
        "idle",
        2,
    )

    flipped = merge(
        same, (Observed(READY, "True", "FirstFramePublished", "up"),), now=LATER, generation=2
    )
    assert flipped[0].last_transition_time == LATER


def test_conditions_of_other_types_are_kept() -> None:
    foreign = Condition(type="Audited", status="True", reason="Checked", last_transition_time=T0)
    merged = merge([foreign], observe(status_of(Phase.QUEUED)), now=LATER, generation=1)
    assert [condition.type for condition in merged] == ["Audited", ADMITTED, READY]
    assert merged[0] == foreign


def facts(status: AvatarSessionStatus, **changes: Any) -> Facts:
    return Facts(spec=SPEC, status=status, limits=LIMITS, **changes)


def test_the_machine_writes_conditions_and_generation_with_each_transition() -> None:
    queued = step(None, facts(AvatarSessionStatus(), generation=1), T0)
    assert queued.status.observed_generation == 1
    assert by_type(queued.status.conditions)[ADMITTED].status == "False"

    starting = step(
        Phase.QUEUED,
        facts(queued.status, generation=1, binding=SLOT, pod=worker_pod_facts()),
        LATER,
    )
    assert starting.status.pod_name == "s-worker"
    admitted = by_type(starting.status.conditions)[ADMITTED]
    assert (admitted.status, admitted.last_transition_time) == ("True", LATER)
    ready = by_type(starting.status.conditions)[READY]
    assert (ready.status, ready.reason, ready.last_transition_time) == (
        "False",
        "WaitingForFirstFrame",
        T0,  # False since queued: still the same status
    )

    # A spec change (a keep-alive) bumps the generation: reported, without a transition.
    worker = WorkerStatus(first_frame_at=LATER, heartbeat_at=LATER)
    running_status = starting.status.model_copy(update={"worker": worker})
    running = step(Phase.STARTING, facts(running_status, generation=2, pod=POD), LATER)
    assert running.status.observed_generation == 2
    assert by_type(running.status.conditions)[READY].status == "True"
    assert all(c.observed_generation == 2 for c in running.status.conditions)


def test_a_step_that_changes_nothing_changes_no_condition() -> None:
    """Level-triggered: the same facts again must not produce a status write."""
    status = step(None, facts(AvatarSessionStatus(), generation=3), T0).status
    again = step(Phase.QUEUED, facts(status, generation=3), LATER)
    assert again.status == status
