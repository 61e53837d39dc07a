"""The warning before a running session's idle or max-duration cutoff (`status.endingSoon`,
the `session.ending_soon` webhook).

The next cutoff is the earlier of the two deadlines (max duration first on a tie, as the
machine ends it). Within `lead` of it the warning names it; before that there is none, and the
machine looks again when the window opens. A cutoff that moves (a keep-alive or speech moves
the idle deadline) names another `at`, or leaves the window and clears the warning, so each
(reason, at) is warned of once, and a later approach warns again.

A cutoff whose whole period is no longer than `lead` is never warned of: every keep-alive
would land inside the window and warn anew. Pure: no I/O.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta

from avatar_crds.enums import EndReason
from avatar_crds.session import AvatarSessionSpec, Deadlines, EndingSoon


@dataclass(frozen=True)
class CutoffWarning:
    ending_soon: EndingSoon | None
    """What `status.endingSoon` should say now."""
    look_again_at: datetime | None
    """When the warning window of the next cutoff opens; None once inside it or with none."""


def warning(
    spec: AvatarSessionSpec, deadlines: Deadlines, now: datetime, lead: timedelta
) -> CutoffWarning:
    cutoffs: list[tuple[datetime, EndReason]] = []
    period = lead.total_seconds()
    if lead > timedelta(0):
        if deadlines.max_duration_at is not None and spec.max_duration_seconds > period:
            cutoffs.append((deadlines.max_duration_at, EndReason.MAX_DURATION_REACHED))
        idle = spec.idle_timeout_seconds
        if deadlines.idle_at is not None and idle is not None and idle > period:
            cutoffs.append((deadlines.idle_at, EndReason.IDLE_TIMEOUT))
    if not cutoffs:
        return CutoffWarning(None, None)
    at, reason = min(cutoffs, key=lambda c: (c[0], c[1] is not EndReason.MAX_DURATION_REACHED))
    opens = at - lead
    if now < opens:
        return CutoffWarning(None, opens)
    return CutoffWarning(EndingSoon(reason=reason, at=at), None)
