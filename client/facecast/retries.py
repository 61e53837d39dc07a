"""When to try a refused request again, and after how long. No I/O: the clients sleep."""

from __future__ import annotations

import email.utils
from dataclasses import dataclass
from datetime import UTC, datetime

# The API says "try again later" with these, and a Retry-After header: 429 rate_limited /
# concurrency_limit_reached, 503 at_capacity / kubernetes_unavailable.
RETRYABLE_STATUSES = frozenset({429, 503})


@dataclass(frozen=True)
class RetryPolicy:
    """`max_attempts` counts the first try; `max_wait` is the longest single wait: a longer
    Retry-After is not cut short (the API would refuse an early retry) but given up on, so the
    error reaches the caller at once. Without Retry-After the wait is `backoff * 2**(n-1)`."""

    max_attempts: int = 3
    max_wait: float = 30.0
    backoff: float = 0.5

    def __post_init__(self) -> None:
        if self.max_attempts < 1:
            raise ValueError("max_attempts counts the first try: at least 1")

    def wait_before_retry(
        self, attempt: int, status: int, retry_after: float | None
    ) -> float | None:
        """Seconds to wait before attempt `attempt + 1`, or None to stop (after `attempt`
        attempts so far, the last answered `status`)."""
        if status not in RETRYABLE_STATUSES or attempt >= self.max_attempts:
            return None
        wait = retry_after if retry_after is not None else self.backoff * 2 ** (attempt - 1)
        return wait if wait <= self.max_wait else None


NO_RETRIES = RetryPolicy(max_attempts=1)


def parse_retry_after(value: str | None, now: datetime | None = None) -> float | None:
    """Retry-After as seconds: delta-seconds or an HTTP date (RFC 9110); None if absent or
    unreadable."""
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(value)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - (now or datetime.now(UTC))).total_seconds())
