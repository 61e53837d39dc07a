"""What a tenant's plan and the cluster's capacity allow. Pure: every input is passed in."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

from api_shim.errors import ApiError, ErrorType, not_found, service_unavailable
from api_shim.schemas import Concurrency, Minutes, Usage
from avatar_crds import billing
from avatar_crds.avatar import Avatar
from avatar_crds.enums import Quality, Visibility
from avatar_crds.phases import session_holds_slot
from avatar_crds.session import AvatarSession
from avatar_crds.tenant import Plan, TenantUsage


def check_quality(plan: Plan, quality: Quality) -> None:
    if quality not in plan.allowed_qualities:
        allowed = ", ".join(str(item) for item in plan.allowed_qualities)
        raise ApiError(
            ErrorType.PERMISSION,
            "quality_not_allowed",
            f"Your plan does not include quality {quality!s}; it includes: {allowed}.",
            param="quality",
        )


def resolve_max_duration(plan: Plan, requested: int, *, explicit: bool) -> int:
    """An explicit request above the plan is refused (the customer asked for something they
    cannot have and should know); the default is quietly lowered to the plan's maximum."""
    limit = plan.max_session_duration_seconds
    if requested <= limit:
        return requested
    if explicit:
        raise ApiError(
            ErrorType.UNPROCESSABLE,
            "max_duration_exceeds_plan",
            f"max_duration_seconds is {requested}; your plan allows at most {limit}.",
            param="max_duration_seconds",
        )
    return limit


def minutes_used(usage: TenantUsage, now: datetime) -> float:
    """In the billing period `now` is in: none once the recorded period has ended."""
    return billing.seconds_used(usage, now) / 60


def check_minutes(plan: Plan, usage: TenantUsage, now: datetime) -> None:
    if billing.seconds_used(usage, now) >= plan.minutes * 60:
        raise ApiError(
            ErrorType.QUOTA_EXCEEDED,
            "minutes_exhausted",
            f"All {plan.minutes} session minutes of this billing period are used.",
            status=403,
        )


def check_avatar(avatar: Avatar | None, *, tenant: str, avatar_id: str) -> None:
    """Someone else's private avatar is reported exactly like a missing one."""
    usable = avatar is not None and (
        avatar.spec.visibility is Visibility.PUBLIC or avatar.spec.tenant == tenant
    )
    if not usable:
        raise not_found("avatar_not_found", f"No avatar {avatar_id}.", param="avatar_id")


def active_count(sessions: Iterable[AvatarSession]) -> int:
    return sum(1 for session in sessions if session_holds_slot(session))


def check_concurrency(plan: Plan, active: int, *, retry_after: int) -> None:
    if active >= plan.max_concurrent_sessions:
        raise ApiError(
            ErrorType.QUOTA_EXCEEDED,
            "concurrency_limit_reached",
            f"You have {active} active sessions; your plan allows"
            f" {plan.max_concurrent_sessions} at once. End one or retry later.",
            retry_after=retry_after,
        )


def check_capacity(waiting: int, *, max_queued: int, retry_after: int) -> None:
    """Beyond `max_queued` waiting sessions a new one would only wait longer: shed load early."""
    if waiting >= max_queued:
        raise service_unavailable(
            "at_capacity",
            "All workers are busy and the queue is full. Retry later.",
            retry_after=retry_after,
        )


def usage_snapshot(plan: Plan, usage: TenantUsage, active: int, now: datetime) -> Usage:
    used = minutes_used(usage, now)
    # A period that has ended is not the one `used` counts: report the one `now` is in.
    period_start = usage.period_start
    if period_start is not None and not billing.is_current(usage, now):
        period_start = billing.period_start(now)
    return Usage(
        concurrency=Concurrency(
            current=active,
            max=plan.max_concurrent_sessions,
            available=max(0, plan.max_concurrent_sessions - active),
        ),
        minutes=Minutes(
            included=plan.minutes,
            used=round(used, 3),
            total_remaining=round(max(0.0, plan.minutes - used), 3),
        ),
        period_start=period_start,
    )
