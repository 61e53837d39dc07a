"""Session Events wait while bindings are being written, in order, and never longer than the
maximum delay; with nothing pending they are posted at once."""

from __future__ import annotations

import pytest

from avatar_crds.session import AvatarSession
from avatar_operator import event_pacing
from avatar_operator.event_pacing import MAX_DELAY_SECONDS, PacedEvents
from testbed.manual_clock import ManualClock
from testbed.objects import session_manifest


class Recorder:
    """Stands in for kopf's Event poster, which needs a running operator: keeps what it gets."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str]] = []

    def __call__(self, session: AvatarSession, kind: str, reason: str, message: str) -> None:
        self.posted.append((session.metadata.name or "", reason))


class Pending:
    """Whether bindings are pending, as the test sets it."""

    def __init__(self) -> None:
        self.bindings = False

    def __call__(self) -> bool:
        return self.bindings


def session(name: str) -> AvatarSession:
    return AvatarSession.model_validate(session_manifest(name=f"sess-{name}"))


def paced() -> tuple[PacedEvents, Recorder, Pending, ManualClock]:
    recorder, pending, clock = Recorder(), Pending(), ManualClock()
    return PacedEvents(recorder, busy=pending, clock=clock), recorder, pending, clock


def test_with_no_binding_pending_an_event_is_posted_at_once() -> None:
    events, recorder, _, clock = paced()

    events.post(session("a"), "Normal", "Queued", "waiting")

    assert recorder.posted == [("sess-a", "Queued")]
    assert clock.pending() == []


def test_events_wait_while_bindings_are_written_and_follow_in_order() -> None:
    events, recorder, pending, _ = paced()
    pending.bindings = True

    events.post(session("a"), "Normal", "Starting", "bound")
    events.post(session("b"), "Normal", "Starting", "bound")
    events.release()  # still pending: nothing goes out
    assert recorder.posted == []

    pending.bindings = False
    events.post(session("a"), "Normal", "Running", "first frame")  # behind the held ones
    assert recorder.posted == []
    events.release()

    assert recorder.posted == [
        ("sess-a", "Starting"),
        ("sess-b", "Starting"),
        ("sess-a", "Running"),
    ]
    assert events.held == 0


def test_a_long_burst_still_shows_its_events_after_the_maximum_delay() -> None:
    events, recorder, pending, clock = paced()
    pending.bindings = True
    events.post(session("a"), "Normal", "Starting", "bound")

    clock.advance(MAX_DELAY_SECONDS - 0.1)
    assert recorder.posted == []
    clock.advance(0.1)

    assert recorder.posted == [("sess-a", "Starting")]
    events.post(session("b"), "Normal", "Starting", "bound")  # a new wait, a new deadline
    assert clock.pending() == [MAX_DELAY_SECONDS]


def test_held_events_are_bounded(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(event_pacing, "MAX_HELD", 3)
    events, recorder, pending, clock = paced()
    pending.bindings = True

    for name in "abc":
        events.post(session(name), "Normal", "Starting", "bound")

    assert [name for name, _ in recorder.posted] == ["sess-a", "sess-b", "sess-c"]
    assert events.held == 0
    assert clock.pending() == []
