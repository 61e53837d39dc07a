"""The reconciler posts a transition's Kubernetes Event through the poster it is given (kopf's in
production), posts nothing for a transition the machine gave no Event, and holds Events while a
binding it chose is not yet written (`event_pacing`)."""

from __future__ import annotations

import asyncio
from typing import Any, cast

from avatar_crds.session import AvatarSession, AvatarSessionStatus, Binding
from avatar_operator.kube import Kube
from avatar_operator.machine import Decision
from avatar_operator.observe import key_of
from avatar_operator.reconciler import Reconciler
from avatar_operator.settings import Settings
from avatar_operator.webhooks import WebhookSender
from testbed.objects import session_manifest


class EventRecorder:
    """Stands in for kopf's Event poster, which needs a running operator: keeps what it gets."""

    def __init__(self) -> None:
        self.posted: list[tuple[str, str, str, str]] = []

    def __call__(self, session: AvatarSession, kind: str, reason: str, message: str) -> None:
        self.posted.append((session.metadata.name or "", kind, reason, message))


def reconciler_posting_to(recorder: EventRecorder) -> Reconciler:
    return Reconciler(
        kube=cast(Kube, None),  # never called: recording a transition does no I/O
        view=cast(Any, None),
        settings=Settings(),
        webhooks=cast(WebhookSender, None),
        post_event=recorder,
    )


def queued(event: tuple[str, str, str] | None) -> Decision:
    return Decision(status=AvatarSessionStatus.model_validate({"phase": "queued"}), event=event)


def test_a_transition_posts_its_event_through_the_injected_poster() -> None:
    recorder = EventRecorder()
    session = AvatarSession.model_validate(session_manifest())
    event = ("Normal", "Queued", "waiting for capacity")

    reconciler_posting_to(recorder)._record_transition(session, queued(event))

    assert recorder.posted == [(session.metadata.name, *event)]


def test_a_transition_without_an_event_posts_nothing() -> None:
    recorder = EventRecorder()
    session = AvatarSession.model_validate(session_manifest())

    reconciler_posting_to(recorder)._record_transition(session, queued(None))

    assert recorder.posted == []


def test_events_wait_for_the_bindings_being_written() -> None:
    async def scenario() -> None:
        recorder = EventRecorder()
        reconciler = reconciler_posting_to(recorder)
        other = AvatarSession.model_validate(session_manifest(name="sess-other"))
        reconciler.bindings[key_of(other)] = Binding(pool="standard", pod="worker-a", slot=0)
        session = AvatarSession.model_validate(session_manifest())
        event = ("Normal", "Queued", "waiting for capacity")

        reconciler._record_transition(session, queued(event))
        assert recorder.posted == []  # the other session's binding goes first

        reconciler._forget(key_of(other))
        assert recorder.posted == [(session.metadata.name, *event)]

    asyncio.run(scenario())
