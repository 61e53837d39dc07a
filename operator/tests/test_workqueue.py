"""The work queue on its own: one run of a key at a time, requests coalesced, failures retried
with back-off, wake-ups, and close. Its timers come from `ManualClock`, which the tests move on
by hand, so no test waits for real time to pass."""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import Any

import pytest

from avatar_operator.workqueue import Backoff, Requeue, WorkQueue
from testbed.manual_clock import ManualClock
from testbed.wait import wait_for_async

WITHIN = 5.0


class Work:
    """The queue's callback: records each run; a run may be made to fail or to block."""

    def __init__(self) -> None:
        self.runs: list[str] = []
        self.running: set[str] = set()
        self.overlapped = False
        self.failures: list[BaseException] = []
        self.gate: asyncio.Event | None = None

    async def __call__(self, key: str) -> None:
        self.overlapped |= key in self.running
        self.running.add(key)
        try:
            self.runs.append(key)
            if self.gate is not None:
                await self.gate.wait()
            if self.failures:
                raise self.failures.pop(0)
        finally:
            self.running.discard(key)


def scenario(body: Callable[[], Coroutine[Any, Any, None]]) -> None:
    asyncio.run(body())


async def runs_reach(work: Work, count: int) -> None:
    await wait_for_async(
        lambda: len(work.runs) >= count and not work.running,
        within=WITHIN,
        description=f"{count} finished runs",
    )


def test_requests_made_before_a_run_starts_are_one_run() -> None:
    async def body() -> None:
        work = Work()
        queue: WorkQueue[str] = WorkQueue(work, clock=ManualClock())
        for _ in range(5):
            queue.add("a")
        await queue.run("a")
        assert work.runs == ["a"]

    scenario(body)


def test_a_request_during_a_run_gets_exactly_one_more_run_and_never_overlaps() -> None:
    async def body() -> None:
        work = Work()
        work.gate = asyncio.Event()
        queue: WorkQueue[str] = WorkQueue(work, clock=ManualClock())
        queue.add("a")
        await wait_for_async(lambda: "a" in work.running, within=WITHIN)
        for _ in range(3):
            queue.add("a")  # a change seen while the first run was deciding
        work.gate.set()
        await runs_reach(work, 2)
        await queue.run("a")  # the queue is idle again: this asks for a third run
        assert work.runs == ["a", "a", "a"]
        assert not work.overlapped

    scenario(body)


def test_keys_run_independently() -> None:
    async def body() -> None:
        work = Work()
        work.gate = asyncio.Event()
        queue: WorkQueue[str] = WorkQueue(work, clock=ManualClock())
        queue.add("a")
        queue.add("b")
        await wait_for_async(lambda: work.running == {"a", "b"}, within=WITHIN)
        work.gate.set()
        await runs_reach(work, 2)
        assert sorted(work.runs) == ["a", "b"]

    scenario(body)


def test_a_failed_run_is_retried_with_growing_back_off_until_it_succeeds() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        work.failures = [RuntimeError("one"), RuntimeError("two"), RuntimeError("three")]
        reported: list[tuple[str, str, float]] = []
        queue: WorkQueue[str] = WorkQueue(
            work,
            clock=clock,
            backoff=Backoff(first=1.0, maximum=3.0),
            on_failure=lambda key, error, delay: reported.append((key, str(error), delay)),
        )
        await queue.run("a")
        assert clock.pending() == [1.0]
        clock.advance(0.5)
        assert work.runs == ["a"]  # not before its time
        clock.advance(0.5)
        await runs_reach(work, 2)
        assert clock.pending() == [2.0]
        clock.advance(2.0)
        await runs_reach(work, 3)
        assert clock.pending() == [3.0]  # capped
        clock.advance(3.0)
        await runs_reach(work, 4)
        assert clock.pending() == []  # succeeded: nothing more to retry
        assert reported == [("a", "one", 1.0), ("a", "two", 2.0), ("a", "three", 3.0)]

        # Success reset the back-off: the next failure waits the first delay again.
        work.failures = [RuntimeError("four")]
        await queue.run("a")
        assert clock.pending() == [1.0]

    scenario(body)


def test_one_retry_is_pending_per_key_however_many_runs_fail() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        work.failures = [RuntimeError("one"), RuntimeError("two")]
        queue: WorkQueue[str] = WorkQueue(work, clock=clock, on_failure=lambda *_: None)
        await queue.run("a")
        await queue.run("a")
        assert clock.pending() == [1.0]  # the second failure left the first retry in place
        clock.advance(1.0)
        await runs_reach(work, 3)
        assert clock.pending() == []

    scenario(body)


def test_requeue_runs_again_after_its_delay_without_counting_as_a_failure() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        work.failures = [RuntimeError("one"), Requeue(0.1)]
        reported: list[str] = []
        queue: WorkQueue[str] = WorkQueue(
            work, clock=clock, on_failure=lambda key, error, delay: reported.append(str(error))
        )
        await queue.run("a")
        clock.advance(1.0)
        await runs_reach(work, 2)
        assert clock.pending() == [pytest.approx(0.1)]
        clock.advance(0.1)
        await runs_reach(work, 3)
        assert reported == ["one"]

    scenario(body)


def test_a_wake_up_runs_the_key_at_its_time_and_replaces_the_one_before() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        queue: WorkQueue[str] = WorkQueue(work, clock=clock)
        queue.wake("a", 10.0)
        queue.wake("a", 5.0)  # a nearer deadline, decided later
        assert clock.pending() == [5.0]
        clock.advance(4.9)
        assert work.runs == []
        clock.advance(0.1)
        await runs_reach(work, 1)
        clock.advance(10.0)
        assert work.runs == ["a"]  # the replaced wake-up never fires

        queue.wake("a", 5.0)
        queue.wake("a", None)
        assert clock.pending() == []

    scenario(body)


def test_requests_within_a_batch_window_are_one_run_at_its_end() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        queue: WorkQueue[str] = WorkQueue(work, clock=clock)
        queue.add_within("a", 0.1)
        clock.advance(0.05)
        queue.add_within("a", 0.1)  # within the window: no later run, no second one
        assert clock.pending() == [pytest.approx(0.05)]
        clock.advance(0.05)
        await runs_reach(work, 1)
        assert work.runs == ["a"]
        queue.add_within("a", 0.1)  # a new window once the last one has run
        queue.forget("a")
        assert clock.pending() == []

    scenario(body)


def test_forget_drops_the_keys_timers() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        work.failures = [RuntimeError("one")]
        queue: WorkQueue[str] = WorkQueue(work, clock=clock, on_failure=lambda *_: None)
        await queue.run("a")
        queue.wake("a", 5.0)
        queue.forget("a")
        assert clock.pending() == []

    scenario(body)


def test_close_cancels_timers_and_the_run_in_progress_and_ignores_later_requests() -> None:
    async def body() -> None:
        clock = ManualClock()
        work = Work()
        work.failures = [RuntimeError("one")]
        queue: WorkQueue[str] = WorkQueue(work, clock=clock, on_failure=lambda *_: None)
        await queue.run("a")  # fails: a retry is set
        queue.wake("b", 5.0)
        work.gate = asyncio.Event()  # never set: the run below blocks until cancelled
        queue.add("c")
        await wait_for_async(lambda: "c" in work.running, within=WITHIN)

        await asyncio.wait_for(queue.close(), WITHIN)  # a run left going would hang it

        assert work.running == set()  # cancelled, not finished
        assert clock.pending() == []
        queue.add("d")
        queue.wake("d", 1.0)
        clock.advance(60.0)
        assert work.runs == ["a", "c"]
        assert clock.pending() == []

    scenario(body)


def test_the_default_clock_is_the_event_loops() -> None:
    async def body() -> None:
        work = Work()
        queue: WorkQueue[str] = WorkQueue(work)
        queue.wake("a", 0.01)
        await runs_reach(work, 1)
        await queue.close()

    scenario(body)


def test_no_more_keys_run_at_once_than_its_concurrency_and_each_gets_its_turn() -> None:
    async def body() -> None:
        work = Work()
        work.gate = asyncio.Event()
        most = 0

        async def counted(key: str) -> None:
            nonlocal most
            most = max(most, len(work.running) + 1)
            await work(key)

        queue: WorkQueue[str] = WorkQueue(counted, clock=ManualClock(), concurrency=2)
        keys = [f"k{i}" for i in range(6)]
        for key in keys:
            queue.add(key)
        await wait_for_async(lambda: len(work.running) == 2, within=WITHIN)
        assert work.runs == ["k0", "k1"]  # in request order; the rest wait
        work.gate.set()
        await runs_reach(work, len(keys))
        assert most == 2
        assert work.runs == keys

    scenario(body)
