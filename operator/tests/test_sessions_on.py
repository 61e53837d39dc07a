"""`Reconciler.sessions_on`: the sessions holding a slot of one pool worker, as its grant must
name them: each session as watched or as the operator last wrote it, whichever is newer, read
through the watch's index by worker (`bound_session_index`) and the writes not yet watched,
never through a scan of every session."""

from __future__ import annotations

from typing import Any, cast

from avatar_operator import pool_readings
from avatar_operator.event_pacing import EventPoster
from avatar_operator.kube import Kube
from avatar_operator.observe import Key, session_key
from avatar_operator.reconciler import Reconciler
from avatar_operator.settings import Settings
from avatar_operator.webhooks import WebhookSender

NS = "fc"
WORKER = "lite-aaaaa"


def session(name: str, phase: str, version: int, *, on: str | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {"phase": phase}
    if on is not None:
        status["binding"] = {"pool": "lite", "pod": on, "slot": 0}
    meta = {"name": name, "namespace": NS, "resourceVersion": str(version)}
    return {"metadata": meta, "spec": {"tenant": "acme", "avatarRef": "av-1"}, "status": status}


class IndexedView:
    """A stand-in for kopf's session index and its by-worker index (handlers.py)."""

    def __init__(self, sessions: list[dict[str, Any]]) -> None:
        self._sessions = {session_key(s): s for s in sessions}

    def session(self, key: Key) -> dict[str, Any] | None:
        return self._sessions.get(key)

    def sessions(self) -> list[dict[str, Any]]:
        raise AssertionError("sessions_on must not scan every session")

    def bound_to(self, namespace: str, pod: str) -> list[Key]:
        return [
            key
            for key, s in self._sessions.items()
            if key[0] == namespace and (held := pool_readings.held_slot(s)) and held.pod == pod
        ]


def reconciler(watched: list[dict[str, Any]], written: list[dict[str, Any]]) -> Reconciler:
    made = Reconciler(
        kube=cast(Kube, None),  # never called: reading only
        view=cast(Any, IndexedView(watched)),
        settings=Settings(),
        webhooks=cast(WebhookSender, None),
        post_event=cast(EventPoster, None),
    )
    made.written.update({session_key(s): s for s in written})
    return made


def test_a_worker_holds_the_sessions_watched_or_last_written_on_it() -> None:
    watched = [
        session("on-it", "running", 5, on=WORKER),
        session("just-bound", "queued", 5),  # our write binding it is not watched yet
        session("just-ended", "running", 5, on=WORKER),  # our write ending it is not either
        session("stale-write", "ended", 9, on=WORKER),  # watched newer than our write
        session("elsewhere", "running", 5, on="lite-bbbbb"),
    ]
    written = [
        session("just-bound", "starting", 6, on=WORKER),
        session("just-ended", "ended", 6, on=WORKER),
        session("stale-write", "running", 8, on=WORKER),
        session("gone", "starting", 6, on=WORKER),  # no longer watched at all: deleted
    ]

    bound = reconciler(watched, written).sessions_on(NS, WORKER)

    assert sorted(s["metadata"]["name"] for s in bound) == ["just-bound", "on-it"]
    assert reconciler(watched, written).sessions_on("other-namespace", WORKER) == []
