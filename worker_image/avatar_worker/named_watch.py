"""Follows one object on the API server by name: a watch with a `metadata.name` field selector
(a Role that names its objects by resourceNames allows `watch` only so), resumed from the last
version seen, re-read on 410 Gone, reconnected with backoff on any failure. The worker follows
its AvatarSession with it (`session_watch`), a pool worker its grant (`pool.runtime`).

The kubernetes client blocks, so the watch runs in a thread of its own (not the loop's
executor: a blocked read must not hold up the loop's shutdown), in the context of the task
that follows it (its log binding); each new version is handed to the event loop. Stopping
closes the open response, which ends a blocked read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import threading
from collections.abc import AsyncIterator, Callable, Mapping
from typing import Any, Generic, TypeVar

from avatar_worker.logging import get_logger, redact
from avatar_worker.watch_events import (
    Changed,
    Expired,
    Failed,
    Progress,
    interpret_as,
    resource_version,
)

log = get_logger("avatar_worker.named_watch")

WATCH_TIMEOUT_S = 300  # the API server ends a watch after this; it is resumed at once
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0

T = TypeVar("T")


class NamedWatch(Generic[T]):
    def __init__(
        self,
        *,
        kind: str,
        name: str,
        read: Callable[[], Mapping[str, Any]],
        list_objects: Callable[..., Any],
        parse: Callable[[Mapping[str, Any]], T],
        watch_timeout_s: int = WATCH_TIMEOUT_S,
    ) -> None:
        """`read` GETs the object as JSON; `list_objects` is the kubernetes client's list call
        of its kind in its namespace (it takes the watch's keyword arguments)."""
        self._kind = kind
        self._name = name
        self._read = read
        self._list = list_objects
        self._parse = parse
        self._watch_timeout_s = watch_timeout_s
        self._lock = threading.Lock()
        self._response: Any = None
        self.connects = 0

    async def follow(self, version: str | None) -> AsyncIterator[T]:
        """Every version of the object after `version` (None: its current one first), until
        the caller stops iterating."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[T] = asyncio.Queue()
        stop = threading.Event()

        def deliver(value: T) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                loop.call_soon_threadsafe(queue.put_nowait, value)

        context = contextvars.copy_context()
        thread = threading.Thread(
            target=context.run,
            args=(self._run, version, deliver, stop),
            name=f"watch-{self._name}",
            daemon=True,
        )
        thread.start()
        try:
            while True:
                yield await queue.get()
        finally:
            stop.set()
            # Not on the loop: closing a response the watch thread is reading waits for that
            # read to return (the buffered reader's lock), up to the watch's timeout.
            threading.Thread(target=self._close_response, daemon=True).start()

    # -- the thread ---------------------------------------------------------------------------

    def _run(
        self, version: str | None, deliver: Callable[[T], None], stop: threading.Event
    ) -> None:
        delay = RETRY_FIRST_S
        while not stop.is_set():
            try:
                if version is None:
                    raw = self._read()
                    deliver(self._parse(raw))
                    version = resource_version(raw)
                version = self._watch_once(version, deliver, stop)
                delay = RETRY_FIRST_S
            except Exception as error:
                if stop.is_set():
                    return
                if getattr(error, "status", None) == 410:
                    version = None
                    continue
                log.warning(
                    f"{self._kind} watch failed; retrying",
                    error=redact(f"{type(error).__name__}: {error}")[:300],
                    retry_s=delay,
                )
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _watch_once(
        self, version: str | None, deliver: Callable[[T], None], stop: threading.Event
    ) -> str | None:
        """One watch request, until the server ends it; the version to resume from (None:
        read the object again first)."""
        from kubernetes.watch.watch import iter_resp_lines

        response: Any = self._list(
            field_selector=f"metadata.name={self._name}",
            watch=True,
            allow_watch_bookmarks=True,
            resource_version=version,
            timeout_seconds=self._watch_timeout_s,
            _preload_content=False,
            _request_timeout=(10, self._watch_timeout_s + 30),
        )
        self.connects += 1
        with self._lock:
            self._response = response
        try:
            for line in iter_resp_lines(response):
                if stop.is_set():
                    return version
                if not line.strip():
                    continue
                step = interpret_as(json.loads(line), self._parse)
                if isinstance(step, Expired):
                    log.info(f"{self._kind} watch expired; reading the {self._kind} again")
                    return None
                if isinstance(step, Failed):
                    raise RuntimeError(step.message)
                if isinstance(step, Progress):
                    if step.note:
                        log.info(f"{self._kind} watch", note=step.note)
                    version = step.resource_version or version
                    continue
                assert isinstance(step, Changed)
                version = step.resource_version or version
                deliver(step.value)
            return version
        finally:
            with self._lock:
                self._response = None
            response.release_conn()

    def _close_response(self) -> None:
        with self._lock:
            response = self._response
        if response is not None:
            with contextlib.suppress(Exception):
                response.close()
