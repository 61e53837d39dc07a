"""ErrorTranslationMiddleware: every error a compatibility route answers, in its service's shape.

It sits inside RequestContextMiddleware (which gives the request its id and logs the status
actually sent) and outside AuthenticationMiddleware, so it sees both the errors raised before
a route runs (API key, rate limit, body size) and the error responses FastAPI's handlers made
(validation, the session service, unknown paths under the prefix). Only error responses are
held back and rewritten; they are small.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import structlog
from pydantic import ValidationError
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_shim.compat.layer import CompatService, service_for
from api_shim.errors import ApiError, ErrorDetail, internal_error

log = structlog.get_logger("api_shim.compat")


class ErrorTranslationMiddleware:
    def __init__(self, app: ASGIApp, *, services: Sequence[CompatService]) -> None:
        self.app = app
        self.services = services

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        service = service_for(self.services, scope["path"]) if scope["type"] == "http" else None
        if service is None:
            await self.app(scope, receive, send)
            return
        held: Message | None = None
        chunks: list[bytes] = []
        started = False

        async def translating_send(message: Message) -> None:
            nonlocal held, started
            if message["type"] == "http.response.start":
                started = True
                if message["status"] >= 400:
                    held = message
                    return
            elif message["type"] == "http.response.body" and held is not None:
                chunks.append(message.get("body", b""))
                if message.get("more_body", False):
                    return
                await _send_translated(send, service, held, b"".join(chunks))
                return
            await send(message)

        try:
            await self.app(scope, receive, translating_send)
        except Exception as error:
            if started:
                raise  # too late to answer; RequestContextMiddleware logs it
            api_error = error if isinstance(error, ApiError) else internal_error()
            if not isinstance(error, ApiError):
                log.exception("unhandled_error")
            request_id = str(scope.get("state", {}).get("request_id", "req_unknown"))
            envelope = json.dumps(api_error.envelope(request_id)).encode()
            start: Message = {
                "type": "http.response.start",
                "status": api_error.status,
                "headers": [
                    (b"content-type", b"application/json"),
                    *((k.lower().encode(), v.encode()) for k, v in api_error.headers().items()),
                ],
            }
            await _send_translated(send, service, start, envelope)


async def _send_translated(send: Send, service: CompatService, start: Message, body: bytes) -> None:
    """The held error response in the service's shape; a body that is not Facecast's error
    envelope (none should be) goes out unchanged."""
    try:
        detail = ErrorDetail.model_validate(json.loads(body)["error"])
    except (ValueError, KeyError, TypeError, ValidationError):
        await send(start)
        await send({"type": "http.response.body", "body": body})
        return
    translated = service.translate_error(start["status"], detail)
    content = json.dumps(translated.body).encode()
    kept = [
        (name, value)
        for name, value in start.get("headers", [])
        if name.lower() not in (b"content-length", b"content-type")
    ]
    headers = [
        *kept,
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    await send({"type": "http.response.start", "status": translated.status, "headers": headers})
    await send({"type": "http.response.body", "body": content})
