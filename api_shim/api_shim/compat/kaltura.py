"""Kaltura Avatar at `/compat/kaltura/v1/avatar-session`: the create takes a Facecast key in
Kaltura's `Authorization: KS <key>` header and answers a session token; the session's later
calls (init-client, say-text, keep-alive, end-session) carry that token as `Authorization:
Bearer <token>` and are allowed for that one session only. Sessions run in managed rooms;
init-client hands out the room's URL and a fresh viewer token."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Annotated, Any

import structlog
from fastapi import APIRouter, Path, Request, Security
from fastapi.security import APIKeyHeader, HTTPAuthorizationCredentials, HTTPBearer
from starlette.datastructures import Headers
from starlette.types import Scope

from api_shim.auth import Principal
from api_shim.compat import kaltura_schemas as kt
from api_shim.compat.kaltura_token import (
    SessionClaims,
    SessionTokenError,
    SessionTokenExpiredError,
)
from api_shim.compat.kaltura_translate import (
    to_client_config,
    to_create_request,
    to_speak_request,
    token_expiry,
    translate_error,
)
from api_shim.compat.layer import CompatService, error_responses
from api_shim.deps import Services, ServicesDep
from api_shim.errors import ApiError, ErrorType, internal_error, invalid_request
from api_shim.middleware import PRINCIPAL_STATE

NAME = "kaltura"
KS_SCHEME = "ks"
SESSION_PATH = "/v1/avatar-session/{sessionId}"

_ERRORS = {
    400: "The request is invalid (a voice this installation lacks, or managed rooms are not"
    " configured on this installation).",
    401: "`Invalid Kaltura Session` (the KS is not a valid Facecast API key), or the session"
    " token is missing, invalid or expired.",
    403: "`Kaltura Session not authorized: ...`: the plan does not allow it, or the session"
    " token is for another session.",
    404: "No such avatar or session for this key.",
    409: "The session is ending or has ended.",
    413: "The body is too large.",
    429: "Too many requests, your plan's concurrent sessions are all in use, or (say-text)"
    " too much text is still to be said.",
    500: "`Internal server error`; the log line with the request id says more.",
    503: "No capacity, or the cluster or the LiveKit server did not answer; retry after"
    " Retry-After seconds.",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    wanted = {*statuses, 401, 429, 500, 503}  # every route reads the cluster
    return error_responses(kt.KalturaError, {s: d for s, d in _ERRORS.items() if s in wanted})


@dataclass(frozen=True)
class SessionCaller(Principal):
    """The caller of a session's later calls: the key that created the session, for that one
    session only (what its token says)."""

    session_id: str


def _token_refused(code: str, message: str) -> ApiError:
    return ApiError(ErrorType.AUTHENTICATION, code, message)


def _limited(services: Services, principal: Principal) -> None:
    structlog.contextvars.bind_contextvars(tenant=principal.tenant, key_id=principal.key_id)
    services.rate_limiter.check(principal.tenant, principal.plan.requests_per_minute)


async def authenticate_ks(services: Services, scope: Scope) -> Principal:
    """`Authorization: KS <Facecast API key>`; anything else is Kaltura's 401."""
    scheme, _, credentials = (Headers(scope=scope).get("authorization") or "").partition(" ")
    key = credentials.strip() if scheme.strip().lower() == KS_SCHEME else None
    principal = await services.authenticator.authenticate(key or None)
    _limited(services, principal)
    return principal


async def authenticate_session_token(services: Services, scope: Scope) -> SessionCaller:
    """`Authorization: Bearer <session token>`: signed by this installation, unexpired, for
    the session in the path, and its key still valid. Checked before the body is read."""
    scheme, _, credentials = (Headers(scope=scope).get("authorization") or "").partition(" ")
    token = credentials.strip()
    if scheme.strip().lower() != "bearer" or not token:
        raise _token_refused(
            "invalid_session_token",
            "No session token: send `Authorization: Bearer <token>` with the token the"
            " session's create answered.",
        )
    tokens = services.session_tokens
    if tokens is None:
        raise _token_refused("invalid_session_token", "Invalid session token.")
    try:
        claims = tokens.verify(token, now=int(time.time()))
    except SessionTokenExpiredError:
        raise _token_refused("session_token_expired", "The session token has expired.") from None
    except SessionTokenError:
        raise _token_refused("invalid_session_token", "Invalid session token.") from None
    if scope.get("path_params", {}).get("sessionId") != claims.session_id:
        raise ApiError(
            ErrorType.PERMISSION,
            "session_token_not_for_session",
            "This session token is for another session.",
        )
    principal = await services.authenticator.principal_of_key(claims.tenant, claims.key_id)
    _limited(services, principal)
    return SessionCaller(
        tenant=principal.tenant,
        key_id=principal.key_id,
        plan=principal.plan,
        usage=principal.usage,
        session_id=claims.session_id,
    )


# Declared for the OpenAPI security schemes; the middleware reads the raw header.
_ks_scheme = APIKeyHeader(
    name="Authorization",
    scheme_name="KalturaKS",
    auto_error=False,
    description="`KS <your Facecast API key>`: the key where Kaltura's KS goes.",
)
_token_scheme = HTTPBearer(
    scheme_name="KalturaSessionToken",
    auto_error=False,
    description="The `token` the session's create answered (this session only).",
)
SessionIdPath = Annotated[
    str,
    Path(
        alias="sessionId",
        description="The `sessionId` the create answered.",
        examples=["sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"],
    ),
]


async def ks_caller(
    request: Request, _ks: Annotated[str | None, Security(_ks_scheme)] = None
) -> Principal:
    """The caller the middleware authenticated with authenticate_ks."""
    principal = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(principal, Principal):
        raise internal_error()  # the middleware is missing or disagrees: fail closed
    return principal


async def session_caller(
    request: Request,
    session_id: SessionIdPath,
    _token: Annotated[HTTPAuthorizationCredentials | None, Security(_token_scheme)] = None,
) -> SessionCaller:
    """The caller the middleware authenticated with authenticate_session_token, for the
    session in the path."""
    caller = getattr(request.state, PRINCIPAL_STATE, None)
    if not isinstance(caller, SessionCaller) or caller.session_id != session_id:
        raise internal_error()  # fail closed
    return caller


KsCaller = Annotated[Principal, Security(ks_caller)]
SessionCallerDep = Annotated[SessionCaller, Security(session_caller)]

router = APIRouter()  # mounted under /compat/kaltura, tagged, by compat.mount


@router.post(
    "/v1/avatar-session",
    summary="Create an avatar session (Kaltura)",
    description=(
        "Creates a session in a room Facecast makes on the platform's LiveKit server and"
        " answers its id and a session token (a JWT) for the later calls. Send your Facecast"
        " key as `Authorization: KS <key>`."
    ),
    responses=_responses(400, 403, 404, 413, 503),
)
async def create_avatar_session(
    body: kt.KalturaCreateSession, principal: KsCaller, services: ServicesDep
) -> kt.KalturaSessionCreated:
    tokens = services.session_tokens
    if tokens is None:  # no secret to sign with: managed rooms are not configured either
        raise invalid_request(
            "managed_rooms_not_configured", "Managed rooms are not configured.", None
        )
    created = await services.sessions.create(
        principal,
        to_create_request(body, principal.plan, services.sessions.served_qualities),
        None,
    )
    claims = SessionClaims(
        session_id=created.session.id,
        tenant=principal.tenant,
        key_id=principal.key_id,
        expires_at=token_expiry(created.session),
    )
    return kt.KalturaSessionCreated(
        session_id=created.session.id, token=tokens.mint(claims, now=int(time.time()))
    )


@router.post(
    f"{SESSION_PATH}/init-client",
    summary="Initialize the client (Kaltura)",
    description=(
        "The WebRTC configuration: the managed room's LiveKit URL and a fresh viewer token"
        " (subscribe-only, valid for joining for a few minutes). Each call mints a new one."
    ),
    responses=_responses(400, 403, 404, 409),
)
async def init_client(caller: SessionCallerDep, services: ServicesDep) -> kt.KalturaClientConfig:
    token = await services.sessions.viewer_token(caller, caller.session_id, None)
    return to_client_config(token)


@router.post(
    f"{SESSION_PATH}/say-text",
    summary="Say text (Kaltura)",
    description=(
        "Queues the text behind what the avatar is already saying (Facecast's"
        " POST /v1/sessions/{id}/speak); the answer names the speak task."
    ),
    responses=_responses(400, 403, 404, 409, 413),
)
async def say_text(
    body: kt.KalturaSayText, caller: SessionCallerDep, services: ServicesDep
) -> kt.KalturaTextQueued:
    task = await services.speech.speak(caller, caller.session_id, to_speak_request(body))
    return kt.KalturaTextQueued(task_id=task.id)


@router.post(
    f"{SESSION_PATH}/keep-alive",
    summary="Keep the session alive (Kaltura)",
    description="Restarts the idle timer; Kaltura's clients send it every 10 seconds.",
    responses=_responses(403, 404, 409),
)
async def keep_alive(caller: SessionCallerDep, services: ServicesDep) -> kt.KalturaOk:
    await services.sessions.keep_alive(caller, caller.session_id)
    return kt.KalturaOk()


@router.post(
    f"{SESSION_PATH}/end-session",
    summary="End the session (Kaltura)",
    description="Ends the session; its room is deleted once it has ended. Safe to repeat.",
    responses=_responses(403, 404),
)
async def end_session(caller: SessionCallerDep, services: ServicesDep) -> kt.KalturaOk:
    await services.sessions.end(caller, caller.session_id)
    return kt.KalturaOk()


SERVICE = CompatService(
    name=NAME,
    title="Kaltura Avatar",
    description=(
        "Kaltura Avatar's client sessions: change the base URL to `/compat/kaltura` and put a"
        " Facecast key where the KS goes."
    ),
    router=router,
    translate_error=translate_error,
    authenticators={ks_caller: authenticate_ks, session_caller: authenticate_session_token},
)
