"""The layers every request passes before a route, outermost first:

1. RequestContextMiddleware: request id, access log, a declared body over its route's limit
   refused at once (it costs nothing), and a last resort that turns any unhandled exception
   into the 500 envelope (never the exception text);
2. AuthenticationMiddleware: the caller (and the tenant's rate limit) of every route that
   needs one, checked before the body is read: an API key, or for a compatibility route the
   credential its service documents (a Kaltura session token);
3. BodyMiddleware: the body's size as it streams, and for the bodies only an image justifies,
   one of a few places (503 when all are taken) and, for JSON, a count of its values before
   anything parses it (bodies.py).
"""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Protocol

import structlog
from starlette.datastructures import Headers
from starlette.routing import Match
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from api_shim.auth import Principal
from api_shim.bodies import MAX_JSON_VALUES, BodyLimits, json_values_exceed
from api_shim.capacity import Slots
from api_shim.errors import ApiError, BodyRefusedError, internal_error, request_too_large
from avatar_crds.ids import new_public_id

REQUEST_ID_HEADER = "X-Request-Id"
REQUEST_ID_PREFIX = "req"
CLIENT_CLOSED_REQUEST = 499  # nginx's convention, for the access log only
# Echo a caller's id only if it is harmless in logs and headers.
_VALID_REQUEST_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._:-]{0,127}$")
# Where AuthenticationMiddleware leaves the caller for the route (request.state.principal).
PRINCIPAL_STATE = "principal"
# How a route's caller is authenticated: from the request's scope (its headers, and the route's
# path parameters), to the caller, or an ApiError.
Authenticate = Callable[[Scope], Awaitable[Principal]]

log = structlog.get_logger("api_shim.access")


def request_id_from(incoming: str | None) -> str:
    if incoming is not None and _VALID_REQUEST_ID.match(incoming):
        return incoming
    return new_public_id(REQUEST_ID_PREFIX)


def declared_length(headers: Headers) -> int | None:
    """Content-Length, if the client sent a valid one."""
    try:
        return int(headers["content-length"])
    except (KeyError, ValueError):
        return None


def body_too_large(limit: int) -> ApiError:
    return request_too_large(f"The request body is larger than {limit} bytes.")


class RequestContextMiddleware:
    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: BodyLimits,
        clock: Callable[[], float] = time.perf_counter,
    ) -> None:
        self.app = app
        self.limits = limits
        self.clock = clock

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

        limit = self.limits.limit(scope["method"], scope["path"])
        try:
            if (declared_length(headers) or 0) > limit:
                raise body_too_large(limit)
            await self.app(scope, receive, send_with_id)
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


class Matcher(Protocol):
    def matches(self, scope: Scope) -> tuple[Match, Scope]: ...


class AuthenticationMiddleware:
    """Authenticates the caller of every route that needs a key, and applies the tenant's
    rate limit, before anything reads the body: FastAPI reads and parses a request's body
    before it runs the route's dependencies, so a key checked only there let anonymous
    callers make the API take in, and parse, bodies up to the image limit (15 MiB). The
    routes' own dependency (deps.authenticated) takes the caller from here."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        routes: Callable[[], Sequence[tuple[Matcher, Authenticate | None]]],
    ) -> None:
        """`routes`: every route in the router's order, and how its caller is authenticated
        (None: it needs no caller); read when the first request comes, once the app has all
        its routes."""
        self.app = app
        self.load_routes = routes
        self.routes: Sequence[tuple[Matcher, Authenticate | None]] | None = None

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            authenticate, route_scope = self._route_authentication(scope)
            if authenticate is not None:
                principal = await authenticate(route_scope)
                scope.setdefault("state", {})[PRINCIPAL_STATE] = principal
        await self.app(scope, receive, send)

    def _route_authentication(self, scope: Scope) -> tuple[Authenticate | None, Scope]:
        """How the route the router will pick, the first that fully matches, authenticates,
        and the scope with that route's path parameters."""
        if self.routes is None:
            self.routes = self.load_routes()
        for route, authenticate in self.routes:
            match, child = route.matches(scope)
            if match is Match.FULL:
                return authenticate, {**scope, **child}
        return None, scope  # 404 or 405: nothing reads the body


class BodyMiddleware:
    """Holds every body to its route's size limit as it streams in (a chunked one has no
    Content-Length to check up front). A body over the default limit, which only the image
    routes allow, first takes one of `slots` for the whole request, so that only so many of
    them are held in memory, parsed or spooled to /tmp at once; and unless it is a multipart
    upload (streamed to the form parser), it is read here in full and its JSON values are
    counted before anything parses it (bodies.py)."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        limits: BodyLimits,
        slots: Slots,
        max_json_values: int = MAX_JSON_VALUES,
    ) -> None:
        self.app = app
        self.limits = limits
        self.slots = slots
        self.max_json_values = max_json_values

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        limit = self.limits.limit(scope["method"], scope["path"])
        limited = _limited(receive, limit)
        if limit <= self.limits.default or not _may_exceed(headers, self.limits.default):
            await self.app(scope, limited, send)
            return
        with self.slots.hold():
            media_type = headers.get("content-type", "").split(";", 1)[0].strip().lower()
            if media_type != "multipart/form-data":
                limited = await self._checked(limited)
            await self.app(scope, limited, send)

    async def _checked(self, receive: Receive) -> Receive:
        """The whole body, read now and refused if it holds too many JSON values; the app
        then receives it as one message."""
        chunks: list[bytes] = []
        while True:
            try:
                message = await receive()
            except BodyRefusedError as error:
                raise error.error from None  # outside FastAPI: the plain ApiError
            if message["type"] != "http.request":
                break  # the client went away: the app hears so, below
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                body = b"".join(chunks)
                chunks.clear()
                # Off the event loop: a hostile body may take a few hundred ms to scan.
                if await asyncio.to_thread(json_values_exceed, body, self.max_json_values):
                    raise request_too_large(
                        f"The request body holds more than {self.max_json_values} JSON values;"
                        " a body this large may only carry an image."
                    )
                message = {"type": "http.request", "body": body, "more_body": False}
                break
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()  # e.g. a response waiting for a disconnect
            replayed = True
            return message

        return replay


def _may_exceed(headers: Headers, size: int) -> bool:
    """Whether the body may be larger than `size`: a chunked one may be anything."""
    declared = declared_length(headers)
    if declared is None:
        return "chunked" in headers.get("transfer-encoding", "").lower()
    return declared > size


def _limited(receive: Receive, limit: int) -> Receive:
    """Stop reading a body as soon as it passes the limit."""
    received = 0

    async def limited_receive() -> Message:
        nonlocal received
        message = await receive()
        if message["type"] == "http.request":
            received += len(message.get("body", b""))
            if received > limit:
                raise BodyRefusedError(body_too_large(limit))
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
