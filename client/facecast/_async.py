"""`AsyncFacecast`: the asyncio client, method for method the same as `Facecast`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable
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


class AsyncFacecast:
    """`AsyncFacecast(api_key="fc_...", base_url=...)`; see `Facecast`."""

    def __init__(
        self,
        api_key: str,
        *,
        base_url: str,
        timeout: float = DEFAULT_TIMEOUT,
        retries: RetryPolicy | None = None,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
        http_client: httpx.AsyncClient | None = None,
    ) -> None:
        headers = client_headers(api_key)  # refuses a missing key before anything is opened
        # A client of your own (proxies, transports, event hooks) gets this base URL and key.
        self._http = http_client or httpx.AsyncClient(timeout=timeout)
        self._http.base_url = httpx.URL(base_url)
        self._http.headers.update(headers)
        self._retries = retries or RetryPolicy()
        self._sleep = sleep
        self.sessions = AsyncSessions(self)
        self.avatars = AsyncAvatars(self)
        self.usage = AsyncUsageResource(self)
        self.voices = AsyncVoices(self)

    async def send(self, call: Call[T]) -> T:
        attempt = 1
        while True:
            try:
                response = await self._http.send(call.request(self._http))
            except httpx.TransportError as unreachable:
                raise FacecastConnectionError(f"{call.path}: {unreachable!r}") from unreachable
            if response.is_success:
                return parse(call, response)
            error = error_of(response)
            wait = self._retries.wait_before_retry(attempt, response.status_code, error.retry_after)
            if wait is None:
                raise error
            await self._sleep(wait)
            attempt += 1

    async def aclose(self) -> None:
        await self._http.aclose()

    async def __aenter__(self) -> AsyncFacecast:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()


class AsyncSessions:
    def __init__(self, client: AsyncFacecast) -> None:
        self._client = client

    async def create(
        self, request: CreateSessionRequest, *, idempotency_key: str | None = None
    ) -> Session:
        """201: the session (`created`). With the same `idempotency_key` again: the same
        session, `idempotent_replayed` true."""
        call = prepare(ops.CREATE_SESSION, json=request.wire(), idempotency_key=idempotency_key)
        return await self._client.send(call)

    async def get(self, session_id: str) -> Session:
        return await self._client.send(
            prepare(ops.GET_SESSION, path_params={"session_id": session_id})
        )

    async def list(
        self,
        *,
        status: SessionStatus | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> SessionList:
        """One page, newest first."""
        params: dict[str, str | int | None] = {"status": status, "limit": limit, "cursor": cursor}
        return await self._client.send(prepare(ops.LIST_SESSIONS, params=params))

    async def list_all(
        self, *, status: SessionStatus | None = None, page_size: int | None = None
    ) -> AsyncIterator[Session]:
        """Every session, newest first, fetching pages as it goes."""
        cursor: str | None = None
        while True:
            page = await self.list(status=status, limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def end(self, session_id: str) -> Session:
        """Ask the worker to finish; safe to repeat."""
        return await self._client.send(
            prepare(ops.END_SESSION, path_params={"session_id": session_id})
        )

    async def keep_alive(self, session_id: str) -> Session:
        return await self._client.send(
            prepare(ops.KEEP_ALIVE, path_params={"session_id": session_id})
        )

    async def cancel(self, session_id: str) -> Session:
        """Delete the session; the reply is the session as it was just before."""
        call = prepare(ops.CANCEL_SESSION, path_params={"session_id": session_id})
        return await self._client.send(call)

    async def speak(
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
        return await self._client.send(call)

    async def get_speak_task(self, session_id: str, task_id: str) -> SpeakTask:
        path_params = {"session_id": session_id, "task_id": task_id}
        return await self._client.send(prepare(ops.GET_SPEAK_TASK, path_params=path_params))

    async def viewer_token(self, session_id: str, *, identity: str | None = None) -> ViewerToken:
        """A fresh token for the viewer of a managed room (subscribe-only unless the session
        was created with `client_can_publish`); `identity` instead of its `client_identity`."""
        request = ViewerTokenRequest(identity=identity)
        path_params = {"session_id": session_id}
        call = prepare(ops.VIEWER_TOKEN, path_params=path_params, json=request.wire())
        return await self._client.send(call)

    async def interrupt(self, session_id: str) -> InterruptResult:
        """Stop speaking: cuts what is being said and clears the queue; safe to repeat."""
        return await self._client.send(
            prepare(ops.INTERRUPT, path_params={"session_id": session_id})
        )


class AsyncAvatars:
    def __init__(self, client: AsyncFacecast) -> None:
        self._client = client

    async def create(
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
        return await self._client.send(call)

    async def get(self, avatar_id: str) -> Avatar:
        return await self._client.send(
            prepare(ops.GET_AVATAR, path_params={"avatar_id": avatar_id})
        )

    async def list(self, *, limit: int | None = None, cursor: str | None = None) -> AvatarList:
        """One page: yours and every public one, newest first."""
        params: dict[str, str | int | None] = {"limit": limit, "cursor": cursor}
        return await self._client.send(prepare(ops.LIST_AVATARS, params=params))

    async def list_all(self, *, page_size: int | None = None) -> AsyncIterator[Avatar]:
        cursor: str | None = None
        while True:
            page = await self.list(limit=page_size, cursor=cursor)
            for item in page.data:
                yield item
            if not page.has_more or page.next_cursor is None:
                return
            cursor = page.next_cursor

    async def delete(self, avatar_id: str) -> Avatar:
        call = prepare(ops.DELETE_AVATAR, path_params={"avatar_id": avatar_id})
        return await self._client.send(call)


class AsyncUsageResource:
    def __init__(self, client: AsyncFacecast) -> None:
        self._client = client

    async def get(self) -> Usage:
        return await self._client.send(prepare(ops.GET_USAGE))


class AsyncVoices:
    def __init__(self, client: AsyncFacecast) -> None:
        self._client = client

    async def list(self) -> VoiceList:
        return await self._client.send(prepare(ops.LIST_VOICES))
