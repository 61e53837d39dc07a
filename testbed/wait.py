"""Waiting on conditions with a deadline: the only way tests synchronise."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    """A condition did not hold before its deadline.

    An AssertionError so that pytest reports it as a test failure, not an error
    in the test machinery.
    """


def wait_for(
    predicate: Callable[[], T | None],
    *,
    timeout: float,
    interval: float = 0.1,
    description: str = "condition",
    fatal: tuple[type[BaseException], ...] = (),
) -> T:
    """Poll `predicate` until it returns something truthy, and return that.

    Exceptions raised by the predicate count as "not yet" (a server that is
    still starting refuses connections); the last one is chained onto the
    timeout error so the cause is visible. Exceptions of a `fatal` type end the
    wait at once (a component that died will not become ready).
    """
    deadline = time.monotonic() + timeout
    last_error: BaseException | None = None
    while True:
        try:
            result = predicate()
        except fatal:
            raise
        except Exception as error:  # any other failure means "not ready yet"
            last_error = error
        else:
            if result:
                return result
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:.1f}s waiting for {description}"
            if last_error is not None:
                message += f" (last error: {last_error!r})"
            raise WaitTimeoutError(message) from last_error
        time.sleep(interval)


async def wait_for_async(
    predicate: Callable[[], T | None],
    *,
    within: float,
    interval: float = 0.05,
    description: str = "condition",
) -> T:
    """`wait_for` for async tests: it sleeps on the event loop, so the loop's own tasks (the
    API's watches) go on meanwhile. Exceptions from the predicate are not swallowed."""
    deadline = time.monotonic() + within
    while True:
        result = predicate()
        if result:
            return result
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {within:.1f}s waiting for {description}")
        await asyncio.sleep(interval)
