"""The informer's LIST/WATCH loop against a scripted stand-in for the API server (ScriptedSource,
a fake: expired versions and dropped watches cannot be produced on demand by the real one).
Its watch on the real API server is tested in test_admission_on_control_plane.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterable
from typing import Any

import pytest

from api_shim import informer
from api_shim.informer import Informer, WatchExpiredError

pytestmark = pytest.mark.anyio

WAIT_SECONDS = 10.0
Event = tuple[str, dict[str, Any]]


def obj(name: str, version: str) -> dict[str, Any]:
    return {"metadata": {"name": name, "resourceVersion": version}}


class ScriptedSource:
    """A fake API server: each LIST answers the next of `lists`; each watch plays the next of
    `watches` (events, then the exception to end with, or None for a normal end) and then
    waits forever once they run out."""

    def __init__(
        self, lists: list[list[dict[str, Any]]], watches: list[tuple[list[Event], Exception | None]]
    ) -> None:
        self.lists = lists
        self.watches = watches
        self.watched_from: list[str] = []

    async def list_objects(
        self, plural: str, label_selector: str | None
    ) -> tuple[list[dict[str, Any]], str]:
        if not self.lists:
            raise ConnectionError("no more lists")
        items = self.lists.pop(0)
        return items, str(10 * len(self.lists) + 10)

    async def watch_objects(
        self, plural: str, label_selector: str | None, version: str, *, seconds: int
    ) -> AsyncIterator[Event]:
        self.watched_from.append(version)
        if not self.watches:
            await asyncio.Event().wait()
        events, ending = self.watches.pop(0)
        for event in events:
            yield event
        if ending is not None:
            raise ending


class Recorder:
    """The owner's side: what the informer handed on, in order."""

    def __init__(self) -> None:
        self.calls: list[tuple[str, Any]] = []
        self.changed: asyncio.Event | None = None  # set on each call, for `until`

    def on_list(self, items: Iterable[dict[str, Any]], _started: float) -> None:
        self._record("list", [i["metadata"]["name"] for i in items])

    def on_event(self, kind: str, raw: dict[str, Any]) -> None:
        self._record(kind, raw["metadata"]["name"])

    def on_lost(self) -> None:
        self._record("lost", None)

    def _record(self, call: str, detail: Any) -> None:
        self.calls.append((call, detail))
        if self.changed is not None:
            self.changed.set()


def make(source: ScriptedSource, recorder: Recorder) -> Informer:
    return Informer(
        source,
        "things",
        label_selector=None,
        on_list=recorder.on_list,
        on_event=recorder.on_event,
        on_lost=recorder.on_lost,
    )


async def until(recorder: Recorder, count: int) -> None:
    """Wait (on this loop) until `count` calls have been recorded."""
    recorder.changed = asyncio.Event()
    async with asyncio.timeout(WAIT_SECONDS):
        while len(recorder.calls) < count:
            recorder.changed.clear()
            await recorder.changed.wait()


async def test_events_follow_the_list_and_each_watch_resumes_where_the_last_ended() -> None:
    source = ScriptedSource(
        lists=[[obj("a", "1")]],
        watches=[
            ([("ADDED", obj("b", "12")), ("BOOKMARK", obj("", "15"))], None),
            ([("DELETED", obj("a", "16"))], None),
        ],
    )
    recorder = Recorder()
    watching = make(source, recorder)
    watching.start()
    watching.start()  # a second start on the same loop is a no-op
    await until(recorder, 4)
    assert recorder.calls == [("lost", None), ("list", ["a"]), ("ADDED", "b"), ("DELETED", "a")]
    # The first watch from the LIST's version; the next from the bookmark's, the last seen.
    assert source.watched_from[:2] == ["10", "15"]
    await watching.aclose()
    assert recorder.calls[-1] == ("lost", None)


async def test_an_expired_version_lists_again_at_once_and_an_error_after_a_pause(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer, "RETRY_SECONDS", (0.0,))
    source = ScriptedSource(
        lists=[[obj("a", "1")], [obj("b", "2")], [obj("c", "3")]],
        watches=[([], WatchExpiredError()), ([], ConnectionResetError())],
    )
    recorder = Recorder()
    watching = make(source, recorder)
    watching.start()
    await until(recorder, 6)
    assert recorder.calls[:6] == [
        ("lost", None),
        ("list", ["a"]),
        ("lost", None),  # expired: the view is not current until the next LIST
        ("list", ["b"]),
        ("lost", None),  # the watch broke
        ("list", ["c"]),
    ]
    await watching.aclose()


async def test_a_watch_that_ends_at_once_without_events_is_an_error_not_a_tight_loop(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(informer, "RETRY_SECONDS", (0.0,))
    source = ScriptedSource(lists=[[obj("a", "1")], [obj("b", "2")]], watches=[([], None)])
    recorder = Recorder()
    watching = make(source, recorder)
    watching.start()
    await until(recorder, 4)
    # Lost and listed again (after the back-off), rather than watched again at once.
    assert recorder.calls[:4] == [("lost", None), ("list", ["a"]), ("lost", None), ("list", ["b"])]
    assert source.watched_from[:2] == ["20", "10"]  # each from its own LIST's version
    await watching.aclose()


async def test_a_stopped_informer_does_not_start_again() -> None:
    source = ScriptedSource(lists=[[obj("a", "1")]], watches=[])
    recorder = Recorder()
    watching = make(source, recorder)
    watching.start()
    await until(recorder, 2)
    await watching.aclose()
    watching.start()
    await asyncio.sleep(0)
    assert [call for call, _ in recorder.calls] == ["lost", "list", "lost"]


def test_a_new_event_loop_gets_a_new_watch_that_lists_afresh() -> None:
    """Tests run one event loop each; a task of a finished loop is replaced, not trusted."""
    source = ScriptedSource(lists=[[obj("a", "1")], [obj("b", "2")]], watches=[])
    recorder = Recorder()
    watching = make(source, recorder)

    async def listed(count: int) -> None:
        watching.start()
        await until(recorder, count)

    asyncio.run(listed(2))  # the loop cancels the task as it closes: the view is lost
    assert recorder.calls == [("lost", None), ("list", ["a"]), ("lost", None)]
    asyncio.run(listed(5))
    assert recorder.calls[3:] == [("lost", None), ("list", ["b"]), ("lost", None)]
    watching.stop()
