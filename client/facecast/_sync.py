"""`Facecast`: the blocking client."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, TypeVar

import httpx

from facecast import operations as ops
from facecast._calls import (
    DEFAULT_TIMEOUT,
    Call,
    client_headers,
    error_of,
    parse,
    prepare,
)
from facecast._uploads import avatar_call
from facecast.errors import FacecastConnectionError
from facecast.models import (
    ApiObject,
    Avatar,
    AvatarList,
    CreateSessionRequest,
    InterruptResult,
    Session,
    SessionList,
    SessionStatus,
    SpeakRequest,
    SpeakTask,
    Usage,
    ViewerToken,
    ViewerTokenRequest,
    Visibility,
    Voice,
    VoiceList,
)
from facecast.retries import RetryPolicy

T = TypeVar("T", bound=ApiObject)


class Facecast:
    """`Facecast(api_key="fc_...", base_url="https://api.example.com")`. Refused requests
    (429, 503) are retried as `retries` says, honouring Retry-After; `sleep` is how it waits."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        sleep: Callable[[float], None] = time.sleep,
        http_client: httpx.Client | None = None,
    ) -> None:
        headers = client_headers(api_key)  # refuses a missing key before anything is opened
        # A client of your own (proxies, transports, event hooks) gets this base URL and key.
        self._http = http_client or httpx.Client(timeout=timeout)
        self._http.base_url = httpx.URL(base_url)
        self._http.headers.update(headers)
        self._retries = retries or RetryPolicy()
        self._sleep = sleep
        self.sessions = Sessions(self)
        self.avatars = Avatars(self)
        self.usage = UsageResource(self)
        self.voices = Voices(self)

    def send(self, call: Call[T]) -> T:
        attempt = 1
        while True:
            try:
                response = self._http.send(call.request(self._http))
            except httpx.TransportError as unreachable:
                raise FacecastConnectionError(f"{call.path}: {unreachable!r}") from unreachable
            if response.is_success:
                return parse(call, response)
            error = error_of(response)
            wait = self._retries.wait_before_retry(attempt, response.status_code, error.retry_after)
            if wait is None:
                raise error
            self._sleep(wait)
            attempt += 1

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> Facecast:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


class Sessions:
    def __init__(self, client: Facecast) -> None:
        self._client = client

    def create(
        self, request: CreateSessionRequest, *, idempotency_key: str | None = None
    ) -> Session:
        """201: the session (`created`). With the same `idempotency_key` again: the same
        session, `idempotent_replayed` true."""
        call = prepare(ops.CREATE_SESSION, json=request.wire(), idempotency_key=idempotency_key)
        return self._client.send(call)

    def get(self, session_id: str) -> Session:
        return self._client.send(prepare(ops.GET_SESSION, path_params={"session_id": session_id}))

    def list(
        self,
        *,
        status: SessionStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SessionList:
        """One page, newest first."""
        params: dict[str, str | int | None] = {"status": status, "limit": limit, "cursor": cursor}
        return self._client.send(prepare(ops.LIST_SESSIONS, params=params))

    def list_all(
        self, *, status: SessionStatus | None = None, page_size: int | None = None
    ) -> Iterator[Session]:
        """Every session, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = self.list(status=status, limit=page_size, cursor=cursor)
            yield from page.data
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    def end(self, session_id: str) -> Session:
        """Ask the worker to finish; safe to repeat."""
        return self._client.send(prepare(ops.END_SESSION, path_params={"session_id": session_id}))

    def keep_alive(self, session_id: str) -> Session:
        return self._client.send(prepare(ops.KEEP_ALIVE, path_params={"session_id": session_id}))

    def cancel(self, session_id: str) -> Session:
        """Delete the session; the reply is the session as it was just before."""
        call = prepare(ops.CANCEL_SESSION, path_params={"session_id": session_id})
        return self._client.send(call)

    def speak(
        self,
        session_id: str,
        text: str,
        *,
        voice: Voice | None = None,
        interrupt: bool = False,
    ) -> SpeakTask:
        """The avatar says `text`: a task, `queued` behind the earlier ones, or with
        `interrupt` in place of what is being said and queued. Not idempotent: a retry after a
        lost reply says it again (get_speak_task tells what happened)."""
        request = SpeakRequest(text=text, voice=voice, interrupt=interrupt)
        call = prepare(ops.SPEAK, path_params={"session_id": session_id}, json=request.wire())
        return self._client.send(call)

    def get_speak_task(self, session_id: str, task_id: str) -> SpeakTask:
        path_params = {"session_id": session_id, "task_id": task_id}
        return self._client.send(prepare(ops.GET_SPEAK_TASK, path_params=path_params))

    def viewer_token(self, session_id: str, *, identity: str | None = None) -> ViewerToken:
        """A fresh token for the viewer of a managed room (subscribe-only unless the session
        was created with `client_can_publish`); `identity` instead of its `client_identity`."""
        request = ViewerTokenRequest(identity=identity)
        path_params = {"session_id": session_id}
        call = prepare(ops.VIEWER_TOKEN, path_params=path_params, json=request.wire())
        return self._client.send(call)

    def interrupt(self, session_id: str) -> InterruptResult:
        """Stop speaking: cuts what is being said and clears the queue; safe to repeat."""
        return self._client.send(prepare(ops.INTERRUPT, path_params={"session_id": session_id}))


class Avatars:
    def __init__(self, client: Facecast) -> None:
        self._client = client

    def create(
        self,
        *,
        file: bytes | Path | IO[bytes] | None = None,
        image_url: str | None = None,
        image_base64: str | None = None,
        visibility: Visibility | None = None,
        display_name: str | None = None,
        filename: str = "portrait.jpg",
        idempotency_key: str | None = None,
    ) -> Avatar:
        """An avatar from one portrait: give exactly one of `file`, `image_url`, `image_base64`."""
        call = avatar_call(
            file=file,
            image_url=image_url,
            image_base64=image_base64,
            visibility=visibility,
            display_name=display_name,
            filename=filename,
            idempotency_key=idempotency_key,
        )
        return self._client.send(call)

    def get(self, avatar_id: str) -> Avatar:
        return self._client.send(prepare(ops.GET_AVATAR, path_params={"avatar_id": avatar_id}))

    def list(self, *, limit: int | None = None, cursor: str | None = None) -> AvatarList:
        """One page: yours and every public one, newest first."""
        params: dict[str, str | int | None] = {"limit": limit, "cursor": cursor}
        return self._client.send(prepare(ops.LIST_AVATARS, params=params))

    def list_all(self, *, page_size: int | None = None) -> Iterator[Avatar]:
        cursor: str | None = None
        while True:
            page = self.list(limit=page_size, cursor=cursor)
            yield from page.data
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    def delete(self, avatar_id: str) -> Avatar:
        call = prepare(ops.DELETE_AVATAR, path_params={"avatar_id": avatar_id})
        return self._client.send(call)


class UsageResource:
    def __init__(self, client: Facecast) -> None:
        self._client = client

    def get(self) -> Usage:
        return self._client.send(prepare(ops.GET_USAGE))


class Voices:
    def __init__(self, client: Facecast) -> None:
        self._client = client

    def list(self) -> VoiceList:
        return self._client.send(prepare(ops.LIST_VOICES))
