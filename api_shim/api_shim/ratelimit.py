"""Per-tenant token buckets sized by the plan's requests per minute. In-process: with several
API replicas each enforces the full rate, which the chart accounts for in its replica count."""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass

from api_shim.errors import ApiError, ErrorType


@dataclass
class TokenBucket:
    """Holds up to `capacity` tokens, refilled continuously at `rate` per second."""

    capacity: float
    rate: float
    tokens: float
    updated: float

    @classmethod
    def full(cls, per_minute: int, now: float) -> TokenBucket:
        return cls(capacity=per_minute, rate=per_minute / 60, tokens=per_minute, updated=now)

    def take(self, now: float) -> float:
        """Take one token: 0.0 when granted, else the seconds until one will be there."""
        elapsed = max(0.0, now - self.updated)
        self.tokens = min(self.capacity, self.tokens + elapsed * self.rate)
        self.updated = now
        if self.tokens >= 1:
            self.tokens -= 1
            return 0.0
        return (1 - self.tokens) / self.rate


class RateLimiter:
    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._buckets: dict[str, TokenBucket] = {}

    def check(self, tenant: str, per_minute: int) -> None:
        """Raise 429 `rate_limited` with a whole-second Retry-After when the bucket is empty."""
        now = self._clock()
        bucket = self._buckets.get(tenant)
        if bucket is None or bucket.capacity != per_minute:
            # A new tenant, or its plan changed: start from a full bucket of the new size.
            bucket = self._buckets[tenant] = TokenBucket.full(per_minute, now)
        wait = bucket.take(now)
        if wait > 0:
            raise ApiError(
                ErrorType.RATE_LIMIT,
                "rate_limited",
                f"Too many requests: your plan allows {per_minute} per minute.",
                retry_after=max(1, math.ceil(wait)),
            )
