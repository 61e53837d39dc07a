from __future__ import annotations

import pytest

from avatar_crds.enums import CancelReason, EndReason, FailureReason, Phase
from avatar_crds.session import AvatarSessionStatus
from avatar_worker.drain import DrainMode, ShutdownSignals, drain_mode


@pytest.mark.parametrize(
    ("status", "mode"),
    [
        (None, DrainMode.FINISH),
        (AvatarSessionStatus(), DrainMode.FINISH),
        (AvatarSessionStatus(phase=Phase.RUNNING), DrainMode.FINISH),
        (AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.USER_ENDED), DrainMode.FINISH),
        (AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.IDLE_TIMEOUT), DrainMode.FINISH),
        (
            AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.MAX_DURATION_REACHED),
            DrainMode.CUT,
        ),
        (
            AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.MINUTES_EXHAUSTED),
            DrainMode.CUT,
        ),
        (
            AvatarSessionStatus(phase=Phase.ENDING, reason=FailureReason.NODE_LOST),
            DrainMode.CUT,
        ),
        (
            AvatarSessionStatus(phase=Phase.CANCELED, reason=CancelReason.USER_CANCELED),
            DrainMode.CUT,
        ),
        (
            AvatarSessionStatus(phase=Phase.FAILED, reason=FailureReason.WORKER_LOST),
            DrainMode.CUT,
        ),
        (AvatarSessionStatus(phase=Phase.ENDED, reason=EndReason.USER_ENDED), DrainMode.FINISH),
    ],
)
def test_drain_mode_follows_the_session(
    status: AvatarSessionStatus | None, mode: DrainMode
) -> None:
    assert drain_mode(status) is mode


def test_first_signal_drains_and_the_second_cuts() -> None:
    signals = ShutdownSignals()
    signals.trigger()
    assert signals.drain.is_set()
    assert not signals.cut.is_set()
    signals.trigger()
    assert signals.cut.is_set()
    assert signals.received == 2
