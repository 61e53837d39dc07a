"""When a refused request is tried again: a 429 or 503 with Retry-After (the API server's
"storage is (re)initializing", or priority and fairness shedding load) was refused before
anything was done, so it is safe to repeat for any method, as client-go does, a few times."""

from __future__ import annotations

MAX_RETRIES = 3
MAX_RETRY_WAIT_SECONDS = 2.0


def retry_after(status: int, header: str | None) -> float | None:
    """Seconds to wait before trying again, or None if this reply is final."""
    if status not in (429, 503) or header is None:
        return None
    try:
        return min(max(float(header), 0.0), MAX_RETRY_WAIT_SECONDS)
    except ValueError:
        return None
