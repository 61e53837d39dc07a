"""Plan and capacity rules, with every input passed in."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from api_shim import policy
from api_shim.errors import ApiError, ErrorType
from avatar_crds.avatar import Avatar
from avatar_crds.enums import Quality
from avatar_crds.tenant import Plan, TenantUsage
from testbed.objects import avatar_manifest

AVATAR_ID = "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
NOW = datetime(2026, 11, 21, 12, 0, tzinfo=UTC)
"""Inside the November 2026 billing period."""


def _avatar(tenant: str, visibility: str) -> Avatar:
    return Avatar.model_validate(avatar_manifest(AVATAR_ID, tenant, visibility=visibility))


def _raises(call: object, *args: object, **kwargs: object) -> ApiError:
    assert callable(call)
    with pytest.raises(ApiError) as caught:
        call(*args, **kwargs)
    return caught.value


def test_quality_must_be_in_the_plan() -> None:
    plan = Plan(allowed_qualities=[Quality.MOCK, Quality.LITE])
    policy.check_quality(plan, Quality.LITE)
    error = _raises(policy.check_quality, plan, Quality.PRO)
    assert (error.status, error.type, error.code, error.param) == (
        403,
        ErrorType.PERMISSION,
        "quality_not_allowed",
        "quality",
    )


def test_an_explicit_max_duration_above_the_plan_is_422_but_the_default_is_capped() -> None:
    plan = Plan(max_session_duration_seconds=300)
    assert policy.resolve_max_duration(plan, 120, explicit=True) == 120
    assert policy.resolve_max_duration(plan, 600, explicit=False) == 300
    error = _raises(policy.resolve_max_duration, plan, 600, explicit=True)
    assert (error.status, error.code, error.param) == (
        422,
        "max_duration_exceeds_plan",
        "max_duration_seconds",
    )


def test_minutes_run_out_at_the_plan_total() -> None:
    plan = Plan(minutes=10)
    policy.check_minutes(plan, TenantUsage(seconds_used=599.0), NOW)
    error = _raises(policy.check_minutes, plan, TenantUsage(seconds_used=600.0), NOW)
    assert (error.status, error.type, error.code) == (
        403,
        ErrorType.QUOTA_EXCEEDED,
        "minutes_exhausted",
    )


def test_own_and_public_avatars_are_usable_others_private_ones_do_not_exist() -> None:
    policy.check_avatar(_avatar("acme", "tenant"), tenant="acme", avatar_id=AVATAR_ID)
    policy.check_avatar(_avatar("globex", "public"), tenant="acme", avatar_id=AVATAR_ID)
    for avatar in (_avatar("globex", "tenant"), None):
        error = _raises(policy.check_avatar, avatar, tenant="acme", avatar_id=AVATAR_ID)
        assert (error.status, error.code, error.param) == (404, "avatar_not_found", "avatar_id")


def test_the_concurrency_limit_is_429_quota_exceeded_with_retry_after() -> None:
    plan = Plan(max_concurrent_sessions=2)
    policy.check_concurrency(plan, 1, retry_after=5)
    error = _raises(policy.check_concurrency, plan, 2, retry_after=5)
    assert (error.status, error.type, error.code) == (
        429,
        ErrorType.QUOTA_EXCEEDED,
        "concurrency_limit_reached",
    )
    assert error.headers() == {"Retry-After": "5"}


def test_a_full_queue_is_503_at_capacity_with_retry_after() -> None:
    policy.check_capacity(2, max_queued=3, retry_after=10)
    error = _raises(policy.check_capacity, 3, max_queued=3, retry_after=10)
    assert (error.status, error.type, error.code) == (
        503,
        ErrorType.SERVICE_UNAVAILABLE,
        "at_capacity",
    )
    assert error.headers() == {"Retry-After": "10"}


def test_the_usage_snapshot() -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    plan = Plan(max_concurrent_sessions=3, minutes=60)
    usage = policy.usage_snapshot(plan, TenantUsage(seconds_used=90.0, period_start=start), 1, NOW)
    assert usage.model_dump(mode="json") == {
        "object": "usage",
        "concurrency": {"current": 1, "max": 3, "available": 2},
        "minutes": {"included": 60, "used": 1.5, "total_remaining": 58.5},
        "period_start": "2026-11-01T00:00:00Z",
    }
    over = policy.usage_snapshot(plan, TenantUsage(seconds_used=7200.0), 5, NOW)
    assert over.concurrency.available == 0
    assert over.minutes.total_remaining == 0


def test_minutes_of_an_ended_billing_period_count_as_unused() -> None:
    """A tenant that used up November may start sessions in December before any new charge,
    and GET /v1/usage reports December's (empty) period."""
    plan = Plan(minutes=10)
    november = TenantUsage(seconds_used=600.0, period_start=datetime(2026, 11, 1, tzinfo=UTC))
    _raises(policy.check_minutes, plan, november, NOW)
    december = datetime(2026, 12, 1, tzinfo=UTC)
    policy.check_minutes(plan, november, december)
    snapshot = policy.usage_snapshot(plan, november, 0, december)
    assert snapshot.minutes.used == 0
    assert snapshot.period_start == december
