"""A fixed number of places for expensive work (large request bodies, avatar images). A request
that finds every place taken is refused at once with 503 `at_capacity` and Retry-After, rather
than waiting in an unbounded queue while it holds its body, its spool file or its image."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from api_shim.errors import service_unavailable


class Slots:
    """Taking a place never waits. A place may be given back from another thread (an avatar
    job that finishes after its request went away), hence the lock."""

    def __init__(self, capacity: int, *, what: str, retry_after: int) -> None:
        if capacity < 1:
            raise ValueError(f"{what}: at least one place is needed, not {capacity}")
        self.capacity = capacity
        self.what = what
        self.retry_after = retry_after
        self._in_use = 0
        self._lock = threading.Lock()

    @property
    def in_use(self) -> int:
        return self._in_use

    def take(self) -> Callable[[], None]:
        """One place, or 503 if none is free; the function returned gives it back (once,
        however often it is called)."""
        with self._lock:
            if self._in_use >= self.capacity:
                raise service_unavailable(
                    "at_capacity",
                    f"This server is busy with {self.capacity} {self.what} already. Retry later.",
                    retry_after=self.retry_after,
                )
            self._in_use += 1
        given_back = False

        def give_back() -> None:
            nonlocal given_back
            with self._lock:
                if not given_back:
                    given_back = True
                    self._in_use -= 1

        return give_back

    @contextmanager
    def hold(self) -> Iterator[None]:
        give_back = self.take()
        try:
            yield
        finally:
            give_back()
