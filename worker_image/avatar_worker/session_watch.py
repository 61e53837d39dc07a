"""Follows the worker's own AvatarSession on the API server: a watch on it by name (the
per-session Role allows `watch` only with a `metadata.name` field selector), resumed from the
last version seen, re-read on 410 Gone, reconnected with backoff on any failure.

The kubernetes client blocks, so the watch runs in a thread of its own (not the loop's
executor: a blocked read must not hold up the loop's shutdown); each new version is handed to
the event loop. Stopping closes the open response, which ends a blocked read at once.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import threading
from collections.abc import AsyncIterator, Callable
from typing import Any

from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession
from avatar_worker.logging import get_logger, redact
from avatar_worker.watch_events import Changed, Expired, Failed, Progress, interpret

log = get_logger("avatar_worker.session_watch")

WATCH_TIMEOUT_S = 300  # the API server ends a watch after this; it is resumed at once
RETRY_FIRST_S = 0.5
RETRY_MAX_S = 10.0


class SessionWatch:
    def __init__(
        self,
        api_client: Any,
        namespace: str,
        name: str,
        *,
        watch_timeout_s: int = WATCH_TIMEOUT_S,
    ) -> None:
        from kubernetes import client as k8s

        self._api = k8s.CustomObjectsApi(api_client)
        self._namespace = namespace
        self._name = name
        self._watch_timeout_s = watch_timeout_s
        self._lock = threading.Lock()
        self._response: Any = None
        self.connects = 0

    async def follow(self, after: AvatarSession) -> AsyncIterator[AvatarSession]:
        """Every version of the session after `after`, until the caller stops iterating."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[AvatarSession] = asyncio.Queue()
        stop = threading.Event()

        def deliver(session: AvatarSession) -> None:
            with contextlib.suppress(RuntimeError):  # the loop has closed: we are stopping
                loop.call_soon_threadsafe(queue.put_nowait, session)

        thread = threading.Thread(
            target=self._run,
            args=(after.metadata.resource_version, deliver, stop),
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
        self,
        version: str | None,
        deliver: Callable[[AvatarSession], None],
        stop: threading.Event,
    ) -> None:
        delay = RETRY_FIRST_S
        while not stop.is_set():
            try:
                if version is None:
                    session = self._read()
                    deliver(session)
                    version = session.metadata.resource_version
                version = self._watch_once(version, deliver, stop)
                delay = RETRY_FIRST_S
            except Exception as error:
                if stop.is_set():
                    return
                if getattr(error, "status", None) == 410:
                    version = None
                    continue
                log.warning(
                    "session watch failed; retrying",
                    error=redact(f"{type(error).__name__}: {error}")[:300],
                    retry_s=delay,
                )
                stop.wait(delay)
                delay = min(delay * 2, RETRY_MAX_S)

    def _read(self) -> AvatarSession:
        raw = self._api.get_namespaced_custom_object(
            GROUP, VERSION, self._namespace, AVATAR_SESSION.plural, self._name
        )
        return AvatarSession.model_validate(raw)

    def _watch_once(
        self,
        version: str | None,
        deliver: Callable[[AvatarSession], None],
        stop: threading.Event,
    ) -> str | None:
        """One watch request, until the server ends it; the version to resume from (None:
        read the session again first)."""
        from kubernetes.watch.watch import iter_resp_lines

        response: Any = self._api.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self._namespace,
            AVATAR_SESSION.plural,
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
                step = interpret(json.loads(line))
                if isinstance(step, Expired):
                    log.info("session watch expired; reading the session again")
                    return None
                if isinstance(step, Failed):
                    raise RuntimeError(step.message)
                if isinstance(step, Progress):
                    if step.note:
                        log.info("session watch", note=step.note)
                    version = step.resource_version or version
                    continue
                assert isinstance(step, Changed)
                version = step.resource_version or version
                deliver(step.session)
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
