"""The billing period and what a tenant has used of it. Pure: the API and the operator both
read usage through `seconds_used`, so a period that has ended counts as nothing used for both.

A billing period is a calendar month in UTC: it starts at 00:00 UTC on the 1st. `periodStart`
is written with the first charge of a period; a charge after the period ended starts the new
one (seconds from the old period are dropped, not carried over).
"""

from __future__ import annotations

from datetime import UTC, datetime

from avatar_crds.tenant import CHARGED_SESSIONS_KEPT, TenantUsage


def period_start(moment: datetime) -> datetime:
    """The start of the billing period `moment` falls in."""
    moment = moment.astimezone(UTC)
    return moment.replace(day=1, hour=0, minute=0, second=0, microsecond=0)


def next_period_start(start: datetime) -> datetime:
    """When the period that starts at `start` ends."""
    start = period_start(start)
    if start.month == 12:
        return start.replace(year=start.year + 1, month=1)
    return start.replace(month=start.month + 1)


def is_current(usage: TenantUsage, now: datetime) -> bool:
    """Whether `usage` counts for the period `now` is in. Usage without a period start was
    recorded before periods were kept: it counts, until the next charge starts a period."""
    return usage.period_start is None or now < next_period_start(usage.period_start)


def seconds_used(usage: TenantUsage, now: datetime) -> float:
    """Seconds used in the current period: 0 once the recorded period has ended."""
    return usage.seconds_used if is_current(usage, now) else 0.0


def charge(usage: TenantUsage, session: str, seconds: float, now: datetime) -> TenantUsage:
    """`usage` with `session`'s seconds added once, in the period `now` falls in. The list of
    charged sessions is kept across a roll-over: a retry after it still charges once."""
    if session in usage.charged_sessions:
        return usage
    if is_current(usage, now):
        used = usage.seconds_used + seconds
        start = usage.period_start or period_start(now)
    else:
        used, start = seconds, period_start(now)
    charged = [*usage.charged_sessions, session][-CHARGED_SESSIONS_KEPT:]
    return usage.model_copy(
        update={"seconds_used": used, "period_start": start, "charged_sessions": charged}
    )
