"""One work queue for every key: a key's work runs one at a time, requests for it coalesce,
failures are tried again with back-off, and a key may ask to be woken later.

It knows nothing of what a key names or what its work does (like the one work queue Agones'
controllers share): it is handed a key and an async callback. The reconciler's keys are
sessions; every path that asks for one (watch events, deadlines, admission, webhooks, retries)
goes through here, which is what keeps two decisions about one session from interleaving.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Hashable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

import structlog

K = TypeVar("K", bound=Hashable)
log = structlog.get_logger("avatar_operator")


class Requeue(Exception):  # noqa: N818 (a request to the queue, not an error)
    """Raised by the work to be run again after `delay` seconds without it counting as a
    failure (no back-off, nothing logged): a write that lost a race and must decide again."""

    def __init__(self, delay: float) -> None:
        super().__init__(f"requeue in {delay}s")
        self.delay = delay


class Timer(Protocol):
    def cancel(self) -> None: ...


class Clock(Protocol):
    """Where the queue's timers come from: the event loop's, or a test's clock it advances."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer: ...


class LoopClock:
    """The running event loop's timers."""

    def call_later(self, delay: float, callback: Callable[[], None]) -> Timer:
        return asyncio.get_running_loop().call_later(delay, callback)


@dataclass(frozen=True)
class Backoff:
    """Delay before the retry that follows the `failures`-th failure in a row: first, twice
    that, four times ..., never more than `maximum`."""

    first: float = 1.0
    maximum: float = 30.0

    def delay(self, failures: int) -> float:
        return min(self.maximum, self.first * 2.0 ** (failures - 1))


FailureHook = Callable[[K, Exception, float], None]
"""Told of a failed run and the seconds until the retry (the reconciler logs it)."""


class WorkQueue(Generic[K]):
    def __init__(
        self,
        work: Callable[[K], Awaitable[None]],
        *,
        on_failure: FailureHook[K] | None = None,
        backoff: Backoff = Backoff(),
        clock: Clock | None = None,
        concurrency: int | None = None,
    ) -> None:
        """`concurrency`: how many keys' work may run at once (None: no limit). The others
        wait their turn in request order, like controller-runtime's MaxConcurrentReconciles:
        ten thousand writes at once would queue for the client's connections until their
        timeouts ran out, and be tried all over again."""
        self._work = work
        self._on_failure = on_failure or _log_failure
        self._backoff = backoff
        self._clock = clock or LoopClock()
        self._dirty: set[K] = set()
        """Keys whose work must run (again): set by `add`, taken by the key's runner."""
        self._runners: dict[K, asyncio.Task[None]] = {}
        self._failures: dict[K, int] = {}
        self._retries: dict[K, Timer] = {}
        self._wakeups: dict[K, Timer] = {}
        self._batches: dict[K, Timer] = {}
        self._closed = False
        self._turns = asyncio.Semaphore(concurrency) if concurrency is not None else None

    def add(self, key: K) -> None:
        """Run `key`'s work soon. Requests made before it starts are one run; a request made
        while it runs gets one more run after it, so no change is left unseen."""
        if self._closed:
            return
        self._dirty.add(key)
        if key not in self._runners:
            self._runners[key] = asyncio.get_running_loop().create_task(self._runner(key))

    async def run(self, key: K) -> None:
        """`add`, then wait until the key's work has run after this call (failures included:
        they are retried as for `add`, not raised)."""
        self.add(key)
        runner = self._runners.get(key)
        if runner is not None:
            # Shielded: a caller that gives up waiting must not cancel the work itself.
            await asyncio.shield(runner)

    def wake(self, key: K, delay: float | None) -> None:
        """Run `key`'s work `delay` seconds from now, in place of any wake-up asked before;
        None: no wake-up."""
        previous = self._wakeups.pop(key, None)
        if previous is not None:
            previous.cancel()
        if delay is None or self._closed:
            return
        self._wakeups[key] = self._clock.call_later(delay, lambda: self._fire(self._wakeups, key))

    def add_within(self, key: K, delay: float) -> None:
        """`add` the key `delay` seconds after the first such request: the requests made
        meanwhile (a burst of changes, each asking) are one run."""
        if key not in self._batches and not self._closed:
            self._batches[key] = self._clock.call_later(
                delay, lambda: self._fire(self._batches, key)
            )

    def forget(self, key: K) -> None:
        """The key is gone: drop its timers and its failure count."""
        for timers in (self._wakeups, self._retries, self._batches):
            timer = timers.pop(key, None)
            if timer is not None:
                timer.cancel()
        self._failures.pop(key, None)

    async def close(self) -> None:
        """Stop every timer and every run in progress; later requests are ignored."""
        self._closed = True
        for timers in (self._wakeups, self._retries, self._batches):
            for timer in timers.values():
                timer.cancel()
            timers.clear()
        self._dirty.clear()
        runners = list(self._runners.values())
        for runner in runners:
            runner.cancel()
        await asyncio.gather(*runners, return_exceptions=True)

    async def _runner(self, key: K) -> None:
        try:
            while key in self._dirty:
                self._dirty.discard(key)
                await self._run_once(key)
        finally:
            # No await between the loop's last check and this: an `add` either set the key
            # dirty in time for the loop, or finds no runner and starts one.
            self._runners.pop(key, None)

    async def _run_once(self, key: K) -> None:
        try:
            if self._turns is None:
                await self._work(key)
            else:
                async with self._turns:
                    await self._work(key)
        except Requeue as requeue:
            self._retry_in(key, requeue.delay)
            return
        except Exception as error:
            if key in self._retries:
                return  # one pending retry is enough: it runs the whole work again
            failures = self._failures[key] = self._failures.get(key, 0) + 1
            delay = self._backoff.delay(failures)
            self._on_failure(key, error, delay)
            self._retry_in(key, delay)
            return
        self._failures.pop(key, None)

    def _retry_in(self, key: K, delay: float) -> None:
        if key not in self._retries:
            self._retries[key] = self._clock.call_later(
                delay, lambda: self._fire(self._retries, key)
            )

    def _fire(self, timers: dict[K, Timer], key: K) -> None:
        timers.pop(key, None)
        self.add(key)


def _log_failure(key: Hashable, error: Exception, retry_in: float) -> None:
    log.error("work_failed", key=repr(key), error=repr(error), retry_in=retry_in)
