"""A session's Kubernetes-style conditions, derived from its status. Pure: no I/O.

Two conditions, each answering a question a person or a tool (`kubectl wait
--for=condition=Ready`) asks about a session:

- `Admitted`: has it been given a GPU (and so a worker pod)? False while it waits.
- `Ready`: is the avatar publishing in the room (the first frame went out, not ending)?

They follow `metav1.Condition`: a CamelCase reason, a message, `lastTransitionTime` that moves
only when the status (True/False/Unknown) changes, and the generation they were computed from.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from avatar_crds.enums import Phase
from avatar_crds.phases import effective_phase
from avatar_crds.session import AvatarSessionStatus, Condition

ADMITTED = "Admitted"
READY = "Ready"

ConditionStatus = Literal["True", "False", "Unknown"]


@dataclass(frozen=True)
class Observed:
    """One condition as just observed, before its transition time is known."""

    type: str
    status: ConditionStatus
    reason: str
    message: str


def camel_case(value: str) -> str:
    """`idle_timeout` -> `IdleTimeout`: a session reason spelled as a condition reason."""
    return "".join(part.capitalize() for part in value.split("_"))


def observe(status: AvatarSessionStatus) -> tuple[Observed, Observed]:
    """What the session's conditions are, read from its phase and timestamps."""
    phase = effective_phase(status.phase)
    return _admitted(phase, status), _ready(phase, status)


def _admitted(phase: Phase, status: AvatarSessionStatus) -> Observed:
    if status.starting_at is not None:
        return Observed(ADMITTED, "True", "SlotBound", "bound to a worker slot")
    if phase.is_terminal:
        return Observed(ADMITTED, "False", "Finished", "the session finished before a slot")
    return Observed(ADMITTED, "False", "WaitingForSlot", "waiting in the queue for a worker slot")


def _ready(phase: Phase, status: AvatarSessionStatus) -> Observed:
    if phase is Phase.RUNNING:
        return Observed(READY, "True", "FirstFramePublished", "the avatar is publishing")
    if phase.is_terminal or phase is Phase.ENDING:
        reason = camel_case(str(status.reason)) if status.reason else camel_case(phase.value)
        return Observed(READY, "False", reason, status.message or f"the session is {phase}")
    if phase is Phase.STARTING:
        return Observed(READY, "False", "WaitingForFirstFrame", "the worker is starting")
    return Observed(READY, "False", "NotAdmitted", "no worker yet")


def merge(
    current: list[Condition],
    observed: tuple[Observed, ...],
    *,
    now: datetime,
    generation: int | None,
) -> list[Condition]:
    """The conditions to write: each observed one, keeping its previous transition time when
    its status did not change (a new reason or message alone is not a transition). Conditions
    of other types (written by someone else) are kept as they are."""
    previous = {condition.type: condition for condition in current}
    mine = {item.type for item in observed}
    merged = [condition for condition in current if condition.type not in mine]
    for item in observed:
        before = previous.get(item.type)
        since = before.last_transition_time if before is not None else None
        if before is None or before.status != item.status or since is None:
            since = now
        merged.append(
            Condition(
                type=item.type,
                status=item.status,
                reason=item.reason,
                message=item.message,
                last_transition_time=since,
                observed_generation=generation,
            )
        )
    return merged
