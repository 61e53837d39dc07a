"""Graceful drain on SIGTERM.

Kubernetes sends SIGTERM when the operator deletes the worker pod. Whether the segment being
spoken is finished or cut is read from the session at that moment ("as instructed"): a session
the operator is ending because time or minutes ran out, or that was canceled or failed, is cut;
otherwise (the customer ended it, an idle timeout, a local run) the current segment plays to its
end, bounded by the drain deadline. A second SIGTERM (or SIGINT) cuts at once. Queued segments
behind the current one are always interrupted and reported as such. Then the worker unpublishes
its tracks, leaves the room, reports a last time and exits 0.
"""

from __future__ import annotations

import asyncio
import signal
from enum import StrEnum

from avatar_crds.enums import EndReason, FailureReason, Phase
from avatar_crds.session import AvatarSessionStatus
from avatar_worker.logging import get_logger

log = get_logger("avatar_worker.drain")


class DrainMode(StrEnum):
    FINISH = "finish"  # play the current segment to its end, then leave
    CUT = "cut"  # stop speaking now, then leave


_CUT_END_REASONS = frozenset({EndReason.MAX_DURATION_REACHED, EndReason.MINUTES_EXHAUSTED})


def drain_mode(status: AvatarSessionStatus | None) -> DrainMode:
    """How to drain, from the session's status as the operator left it (pure)."""
    if status is None or status.phase is None:
        return DrainMode.FINISH
    if status.phase in (Phase.CANCELED, Phase.FAILED):
        return DrainMode.CUT
    reason = status.reason
    if reason in _CUT_END_REASONS or isinstance(reason, FailureReason):
        return DrainMode.CUT
    return DrainMode.FINISH


def leave_mode(status: AvatarSessionStatus | None) -> DrainMode | None:
    """How a pool slot leaves a session that is over (pure): None while it is to be served;
    as instructed once it is ending; at once when it is terminal (nobody is listening)."""
    if status is None or status.phase is None:
        return None
    if status.phase is Phase.ENDING:
        return drain_mode(status)
    if status.phase.is_terminal:
        return DrainMode.CUT
    return None


class ShutdownSignals:
    """First SIGTERM/SIGINT: drain. Any further one: cut now."""

    def __init__(self) -> None:
        self.drain = asyncio.Event()
        self.cut = asyncio.Event()
        self.received = 0
        self._installed: list[int] = []

    def install(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self.trigger, sig)
            self._installed.append(sig)

    def uninstall(self, loop: asyncio.AbstractEventLoop) -> None:
        for sig in self._installed:
            loop.remove_signal_handler(sig)
        self._installed.clear()

    def trigger(self, sig: int = signal.SIGTERM) -> None:
        self.received += 1
        if self.drain.is_set():
            log.warning("second shutdown signal: cutting now", signal=signal.Signals(sig).name)
            self.cut.set()
            return
        log.info("shutdown signal: draining", signal=signal.Signals(sig).name)
        self.drain.set()
