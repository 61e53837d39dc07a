"""Token buckets sized by requests per minute, on a fake clock."""

from __future__ import annotations

import pytest

from api_shim.errors import ApiError, ErrorType
from api_shim.ratelimit import RateLimiter, TokenBucket


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


def test_a_full_bucket_grants_its_capacity_then_says_how_long_to_wait() -> None:
    bucket = TokenBucket.full(per_minute=60, now=0.0)
    assert [bucket.take(0.0) for _ in range(60)] == [0.0] * 60
    assert bucket.take(0.0) == pytest.approx(1.0)
    assert bucket.take(0.5) == pytest.approx(0.5)
    assert bucket.take(1.0) == 0.0


def test_refill_never_exceeds_capacity() -> None:
    bucket = TokenBucket.full(per_minute=2, now=0.0)
    bucket.take(0.0)
    bucket.take(1000.0)
    assert bucket.tokens == pytest.approx(1.0)


def test_the_limiter_answers_429_rate_limited_with_a_whole_second_retry_after() -> None:
    clock = FakeClock()
    limiter = RateLimiter(clock=clock)
    limiter.check("acme", 2)
    limiter.check("acme", 2)
    with pytest.raises(ApiError) as caught:
        limiter.check("acme", 2)
    assert (caught.value.status, caught.value.type, caught.value.code) == (
        429,
        ErrorType.RATE_LIMIT,
        "rate_limited",
    )
    assert caught.value.headers() == {"Retry-After": "30"}
    clock.now += 30
    limiter.check("acme", 2)


def test_tenants_have_separate_buckets() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.check("acme", 1)
    limiter.check("globex", 1)
    with pytest.raises(ApiError):
        limiter.check("acme", 1)


def test_a_plan_change_takes_effect_with_a_fresh_bucket() -> None:
    limiter = RateLimiter(clock=FakeClock())
    limiter.check("acme", 1)
    limiter.check("acme", 5)
    limiter.check("acme", 5)
