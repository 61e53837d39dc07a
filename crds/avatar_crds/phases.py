"""What a session's phase means to the API, the operator and the worker, in one place.

The tenant-slot rule: a session holds one of its tenant's `maxConcurrentSessions` slots from
the moment it is created until it is terminal or being deleted, waiting (created, queued)
included. So a tenant can never queue more sessions than its plan allows to run. The API
refuses a create beyond the limit with this predicate; the operator admits a queued session
only while its tenant's slot-holders ahead of it leave room (the final word across API
replicas); and the Tenant's `status.usage.activeSessions` counts the same sessions.

Predicates take the phase as the API server stores it (a string, or absent before the
operator's first write) so the operator can ask them of raw watched bodies, with typed
wrappers for an `AvatarSession`.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from avatar_crds.enums import TERMINAL_PHASES, Phase
from avatar_crds.session import AvatarSession

WAITING_PHASES = frozenset({Phase.CREATED, Phase.QUEUED})
"""Waiting for a worker: not yet admitted to start one."""

WORKER_PHASES = frozenset({Phase.STARTING, Phase.RUNNING, Phase.ENDING})
"""Holding (or about to hold) a worker pod and its GPU."""


def effective_phase(phase: str | None) -> Phase:
    """An absent phase means the operator has not seen the session yet."""
    return Phase(phase) if phase else Phase.CREATED


def holds_slot(phase: str | None, *, deleting: bool) -> bool:
    """Counts against the tenant's concurrent-session limit: not finished, not being removed."""
    return effective_phase(phase) not in TERMINAL_PHASES and not deleting


def is_waiting(phase: str | None, *, deleting: bool) -> bool:
    """Waits for a worker (created or queued): what the namespace-wide queue check counts."""
    return effective_phase(phase) in WAITING_PHASES and not deleting


# --- typed sessions -----------------------------------------------------------------------


def phase_of(session: AvatarSession) -> Phase:
    return effective_phase(session.status.phase)


def is_being_deleted(session: AvatarSession) -> bool:
    return session.metadata.deletion_timestamp is not None


def is_terminal(session: AvatarSession) -> bool:
    return phase_of(session) in TERMINAL_PHASES


def session_holds_slot(session: AvatarSession) -> bool:
    return holds_slot(session.status.phase, deleting=is_being_deleted(session))


def session_is_waiting(session: AvatarSession) -> bool:
    return is_waiting(session.status.phase, deleting=is_being_deleted(session))


# --- raw bodies, as a watch delivers them ----------------------------------------------------


def body_phase(body: Mapping[str, Any]) -> str | None:
    phase = (body.get("status") or {}).get("phase")
    return str(phase) if phase else None


def body_is_being_deleted(body: Mapping[str, Any]) -> bool:
    return bool((body.get("metadata") or {}).get("deletionTimestamp"))


def body_holds_slot(body: Mapping[str, Any]) -> bool:
    return holds_slot(body_phase(body), deleting=body_is_being_deleted(body))
