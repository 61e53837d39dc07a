"""Timers that fire only when a test moves time on: a stand-in for the event loop's clock
(`avatar_operator.workqueue.Clock`), so no test waits for real time to pass."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field


@dataclass
class _ManualTimer:
    due: float
    callback: Callable[[], None]
    cancelled: bool = False

    def cancel(self) -> None:
        self.cancelled = True


@dataclass
class ManualClock:
    """Stands in for the event loop's timers: time moves only when a test calls `advance`."""

    now: float = 0.0
    timers: list[_ManualTimer] = field(default_factory=list)

    def call_later(self, delay: float, callback: Callable[[], None]) -> _ManualTimer:
        timer = _ManualTimer(self.now + delay, callback)
        self.timers.append(timer)
        return timer

    def advance(self, seconds: float) -> None:
        """Move time on, firing (in order) every timer that falls due on the way."""
        self.now += seconds
        while due := sorted(
            (t for t in self.timers if not t.cancelled and t.due <= self.now), key=lambda t: t.due
        ):
            timer = due[0]
            self.timers.remove(timer)
            timer.callback()

    def pending(self) -> list[float]:
        """Seconds from now until each timer still set."""
        return sorted(t.due - self.now for t in self.timers if not t.cancelled)
