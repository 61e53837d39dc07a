"""The outermost layer of every request: request id, body size limit, access log, and a last
resort that turns any unhandled exception into the 500 envelope (never the exception text)."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Callable, Mapping

import structlog
from starlette.datastructures import Headers
from starlette.exceptions import HTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_shim.errors import ApiError, internal_error, request_too_large
from avatar_crds.ids import new_public_id

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_PREFIX = "req"
CLIENT_CLOSED_REQUEST = 499  # nginx's convention, for the access log only
# Echo a caller's id only if it is harmless in logs and headers.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")

log = structlog.get_logger("api_shim.access")


def request_id_from(incoming: str | None) -> str:
    if incoming is not None and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return new_public_id(REQUEST_ID_PREFIX)


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        max_body_bytes: int,
        clock: Callable[[], float] = time.perf_counter,
        large_bodies: Mapping[str, int] | None = None,
    ) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.clock = clock
        # POST paths that accept larger bodies (images), and their limit.
        self.large_bodies = dict(large_bodies or {})

    def body_limit(self, scope: Scope) -> int:
        if scope.get("method") == "POST":
            return self.large_bodies.get(scope.get("path", ""), self.max_body_bytes)
        return self.max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        request_id = request_id_from(headers.get(REQUEST_ID_HEADER))
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.clear_contextvars()
        structlog.contextvars.bind_contextvars(request_id=request_id)
        started = self.clock()
        status = 500
        response_started = False

        async def send_with_id(message: Message) -> None:
            nonlocal status, response_started
            if message["type"] == "http.response.start":
                response_started = True
                status = message["status"]
                message.setdefault("headers", [])
                message["headers"] = [
                    *message["headers"],
                    (REQUEST_ID_HEADER.lower().encode(), request_id.encode()),
                ]
            await send(message)

        try:
            declared = int(headers.get("content-length", "0") or 0)
        except ValueError:
            declared = 0
        limit = self.body_limit(scope)
        try:
            if declared > limit:
                raise request_too_large(limit)
            await self.app(scope, self._limited(receive, limit), send_with_id)
        except asyncio.CancelledError:
            status = CLIENT_CLOSED_REQUEST  # the client went away; nothing left to answer
            raise
        except Exception as error:
            if response_started:  # too late for an envelope; the client sees a cut response
                log.exception("response_failed")
            else:
                api_error = error if isinstance(error, ApiError) else internal_error()
                if not isinstance(error, ApiError):
                    log.exception("unhandled_error")
                status = api_error.status
                await _send_error(send_with_id, api_error, request_id)
        finally:
            log.info(
                "request",
                method=scope["method"],
                path=scope["path"],
                status=status,
                duration_ms=round((self.clock() - started) * 1000, 2),
            )

    def _limited(self, receive: Receive, limit: int) -> Receive:
        """Stop reading a chunked body as soon as it passes the limit."""
        received = 0

        async def limited_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    # FastAPI re-raises HTTPException from body reading untouched.
                    raise HTTPException(status_code=413)
            return message

        return limited_receive


async def _send_error(send: Send, error: ApiError, request_id: str) -> None:
    body = json.dumps(error.envelope(request_id)).encode()
    headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(body)).encode()),
        *((name.lower().encode(), value.encode()) for name, value in error.headers().items()),
    ]
    await send({"type": "http.response.start", "status": error.status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
