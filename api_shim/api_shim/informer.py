"""LIST then WATCH one kind of custom resource, as a task on the serving event loop, handing
each LIST and each event to its owner (an index). After an error it lists again, with
back-off; an expired resourceVersion only means "list again". Nothing here keeps state beyond
the resourceVersion to resume from.

A task rather than a thread: the watch then shares the loop's C-level TLS and HTTP parsing
with every other call, and its events reach the index without crossing threads (no locks, no
GIL hand-offs on every event)."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable
from typing import Any, Protocol

import structlog

log = structlog.get_logger("api_shim.informer")

WATCH_SECONDS = 240  # the API server ends each watch after this; it resumes where it was
RETRY_SECONDS = (0.5, 1.0, 2.0, 5.0, 10.0, 30.0)  # after an error, the n-th time in a row
# A watch that ends sooner than this without a single event is treated as an error (as
# client-go's reflector does), so that a server ending every watch at once is not asked
# again in a tight loop.
SHORTEST_WATCH_SECONDS = 1.0

# (items, when the LIST started): the new truth. The monotonic start time lets an index tell
# what it did itself before the LIST from what came after.
OnList = Callable[[Iterable[dict[str, Any]], float], None]
OnEvent = Callable[[str, dict[str, Any]], None]  # ADDED, MODIFIED or DELETED; the raw object


class WatchExpiredError(Exception):
    """The resourceVersion to resume from is gone from the API server's history (410)."""


class ShortWatchError(Exception):
    """The API server ended a watch at once without an event."""


class WatchSource(Protocol):
    """The namespace's objects of one plural, as the Kubernetes API serves them (kube.Kube)."""

    async def list_objects(
        self, plural: str, label_selector: str | None
    ) -> tuple[list[dict[str, Any]], str]:
        """(items, the list's resourceVersion)."""
        ...

    def watch_objects(
        self, plural: str, label_selector: str | None, version: str, *, seconds: int
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """(event type, object) after `version` until the API server ends the watch, BOOKMARK
        events included; WatchExpiredError if `version` is too old."""
        ...


class Informer:
    def __init__(
        self,
        source: WatchSource,
        plural: str,
        *,
        label_selector: str | None,
        on_list: OnList,
        on_event: OnEvent,
        on_lost: Callable[[], None],
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """`on_lost` is called when the view stops being current (an error, or the task
        ending), until the next `on_list`."""
        self.plural = plural
        self._source = source
        self._label_selector = label_selector
        self._on_list = on_list
        self._on_event = on_event
        self._on_lost = on_lost
        self._clock = clock
        self._stopped = False
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        """Start watching on the running event loop; cheap to call again. A task left on
        another loop (tests run one loop each, and a loop cancels its tasks as it closes) is
        replaced by one on this loop, which lists afresh."""
        if self._stopped:
            return
        loop = asyncio.get_running_loop()
        task = self._task
        if task is not None and not task.done() and task.get_loop() is loop:
            return
        self._on_lost()  # whatever the old task saw is not current on this loop
        self._task = loop.create_task(self._run(), name=f"{self.plural}-informer")

    def stop(self) -> None:
        """Stop for good, from any thread (the task ends at its next await)."""
        self._stopped = True
        task, self._task = self._task, None
        if task is None or task.done() or task.get_loop().is_closed():
            return
        loop = task.get_loop()
        if _running_loop() is loop:
            task.cancel()
        else:
            loop.call_soon_threadsafe(task.cancel)

    async def aclose(self) -> None:
        """Stop, and wait for the task to end (from the loop it runs on)."""
        task = self._task
        self.stop()
        if task is not None and task.get_loop() is _running_loop():
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _run(self) -> None:
        failures = 0
        try:
            while True:
                try:
                    version = await self._relist()
                    failures = 0
                    while True:
                        version = await self._watch_from(version)
                except WatchExpiredError:
                    self._on_lost()  # list again at once
                except Exception as error:
                    self._on_lost()
                    retry_in = RETRY_SECONDS[min(failures, len(RETRY_SECONDS) - 1)]
                    log.warning(
                        "informer_unavailable",
                        plural=self.plural,
                        error_type=type(error).__name__,
                        retry_in=retry_in,
                    )
                    await asyncio.sleep(retry_in)
                    failures += 1
        finally:
            self._on_lost()

    async def _relist(self) -> str:
        started = self._clock()
        items, version = await self._source.list_objects(self.plural, self._label_selector)
        self._on_list(items, started)
        return version

    async def _watch_from(self, version: str) -> str:
        """Hand on events until the API server ends the watch; the version to resume from."""
        started, received = self._clock(), 0
        events = self._source.watch_objects(
            self.plural, self._label_selector, version, seconds=WATCH_SECONDS
        )
        async for kind, raw in events:
            received += 1
            version = str(raw.get("metadata", {}).get("resourceVersion") or version)
            if kind in ("ADDED", "MODIFIED", "DELETED"):  # not BOOKMARK
                self._on_event(kind, raw)
        if not received and self._clock() - started < SHORTEST_WATCH_SECONDS:
            raise ShortWatchError()
        return version


class WatchedIndex:
    """What an index kept by an Informer shares: it is in sync from its first LIST until the
    watch is lost. Without a `source` (tests) nothing is watched: feed it with `_replace` and
    `_apply`, which each index defines."""

    def __init__(
        self,
        source: WatchSource | None,
        plural: str,
        *,
        label_selector: str | None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._synced = False
        self._informer = (
            None
            if source is None
            else Informer(
                source,
                plural,
                label_selector=label_selector,
                on_list=self._replace,
                on_event=self._apply,
                on_lost=self._lost,
                clock=clock,
            )
        )

    @property
    def synced(self) -> bool:
        return self._synced

    def start(self) -> None:
        """Start watching (on the running loop); cheap to call again."""
        if self._informer is not None:
            self._informer.start()

    def stop(self) -> None:
        if self._informer is not None:
            self._informer.stop()

    async def aclose(self) -> None:
        if self._informer is not None:
            await self._informer.aclose()

    def _lost(self) -> None:
        self._synced = False

    def _replace(self, items: Iterable[dict[str, Any]], started: float) -> None:
        raise NotImplementedError

    def _apply(self, kind: str, raw: dict[str, Any]) -> None:
        raise NotImplementedError


def _running_loop() -> asyncio.AbstractEventLoop | None:
    try:
        return asyncio.get_running_loop()
    except RuntimeError:
        return None
