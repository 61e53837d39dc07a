"""Where a granted session runs on this worker, and who holds each slot (pure).

The operator writes the binding (pool, pod, slot) into the session's status before it grants the
session, so a worker serves only what is bound to itself, on the slot the binding names. A slot
is held from when its session is placed there until that session's Worker has left the room:
a new session bound to a slot whose previous session is still leaving waits for it.
"""

from __future__ import annotations

from dataclasses import dataclass

from avatar_crds.enums import Phase
from avatar_crds.phases import phase_of
from avatar_crds.session import AvatarSession

SERVED_PHASES = frozenset({Phase.STARTING, Phase.RUNNING})
"""A session is joined only in these; once ending it is left, never joined."""


@dataclass(frozen=True)
class Refused:
    """Why this worker does not serve a granted session (logged, never acted on)."""

    why: str


def place(session: AvatarSession, *, pod: str, slots: int) -> int | Refused:
    """The slot to serve `session` on, or why not."""
    binding = session.status.binding
    if binding is None:
        return Refused("the session is not bound to a worker")
    if binding.pod != pod:
        return Refused(f"the session is bound to another worker, {binding.pod}")
    if binding.slot >= slots:
        return Refused(f"slot {binding.slot} is beyond this worker's {slots} slots")
    phase = phase_of(session)
    if phase not in SERVED_PHASES:
        return Refused(f"the session is {phase.value}")
    return binding.slot


class SlotTable:
    """Which session holds each slot."""

    def __init__(self, slots: int) -> None:
        self.slots = slots
        self._holders: dict[int, str] = {}

    def holder(self, slot: int) -> str | None:
        return self._holders.get(slot)

    def take(self, slot: int, session: str) -> bool:
        """Hold `slot` for `session` if it is free; False while a session holds it (the same
        one too: a session granted again while it is still leaving waits for itself)."""
        if not 0 <= slot < self.slots:
            raise ValueError(f"slot {slot} is not one of this worker's {self.slots}")
        if slot in self._holders:
            return False
        self._holders[slot] = session
        return True

    def release(self, slot: int, session: str) -> None:
        """`session` has left `slot` (a no-op if it did not hold it)."""
        if self._holders.get(slot) == session:
            del self._holders[slot]
