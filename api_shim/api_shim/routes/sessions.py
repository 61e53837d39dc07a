"""/v1/sessions: create, read, list, end, keep alive, viewer tokens, cancel."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from api_shim.deps import IdempotencyKeyDep, PrincipalDep, ServicesDep
from api_shim.routes.common import error_responses
from api_shim.sessions.schemas import SESSION_ID_PATTERN, CreateSessionRequest, Session, SessionList
from api_shim.sessions.viewer_schemas import ViewerToken, ViewerTokenRequest
from avatar_crds.enums import Phase

router = APIRouter(prefix="/v1/sessions", tags=["sessions"])

REPLAYED_HEADER = "Idempotent-Replayed"
SessionId = Annotated[
    str, Path(description="A `sess_...` id.", examples=["sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"])
]


@router.post(
    "",
    status_code=201,
    summary="Create a session",
    description=(
        "Returns at once; the session is `created` until the operator queues it, then"
        f" `queued`. A replay with the same Idempotency-Key answers {REPLAYED_HEADER}: true."
    ),
    responses=error_responses(400, 401, 403, 404, 409, 413, 422, 429),
)
async def create_session(
    body: CreateSessionRequest,
    response: Response,
    principal: PrincipalDep,
    services: ServicesDep,
    key: IdempotencyKeyDep,
) -> Session:
    created = await services.sessions.create(principal, body, key)
    if created.replayed:
        response.headers[REPLAYED_HEADER] = "true"
    return created.session


@router.get(
    "",
    summary="List sessions",
    description="Newest first. Follow `next_cursor` while `has_more` is true.",
    responses=error_responses(400, 401, 429),
)
async def list_sessions(
    principal: PrincipalDep,
    services: ServicesDep,
    status: Annotated[Phase | None, Query(description="Only sessions in this status.")] = None,
    limit: Annotated[int, Query(ge=1, le=100, description="Page size.")] = 20,
    cursor: Annotated[
        str | None,
        Query(
            description="`next_cursor` of the previous page.",
            # Documented only: the service checks it and answers 400 `invalid_cursor`.
            json_schema_extra={"pattern": SESSION_ID_PATTERN},
        ),
    ] = None,
) -> SessionList:
    return await services.sessions.list_sessions(
        principal, status=status, limit=limit, cursor=cursor
    )


@router.get(
    "/{session_id}",
    summary="Get a session",
    responses=error_responses(401, 404, 429),
)
async def get_session(
    session_id: SessionId, principal: PrincipalDep, services: ServicesDep
) -> Session:
    return await services.sessions.get(principal, session_id)


@router.post(
    "/{session_id}/end",
    summary="End a session gracefully",
    description=(
        "Asks the worker to finish (it does not cut audio mid-segment). Safe to repeat: once"
        " asked, or once finished, it returns the session unchanged."
    ),
    responses=error_responses(400, 401, 404, 409, 429),
)
async def end_session(
    session_id: SessionId,
    principal: PrincipalDep,
    services: ServicesDep,
    _key: IdempotencyKeyDep,
) -> Session:
    return await services.sessions.end(principal, session_id)


@router.post(
    "/{session_id}/keep-alive",
    summary="Restart the idle timer",
    description="409 `session_not_active` once the session is ending or finished.",
    responses=error_responses(400, 401, 404, 409, 429),
)
async def keep_alive(
    session_id: SessionId,
    principal: PrincipalDep,
    services: ServicesDep,
    _key: IdempotencyKeyDep,
) -> Session:
    return await services.sessions.keep_alive(principal, session_id)


@router.post(
    "/{session_id}/viewer-token",
    summary="Mint a viewer token (managed rooms)",
    description=(
        "A fresh LiveKit token for the viewer of a session in a managed room, valid for"
        " joining for a few minutes (`expires_at`): subscribe-only unless the session was"
        " created with `transport.client_can_publish`. Each call mints a new one; none is"
        " stored. 400 `session_not_managed` for a session in your own room, 409"
        " `session_not_active` once it is ending or finished."
    ),
    responses=error_responses(400, 401, 404, 409, 429),
)
async def viewer_token(
    session_id: SessionId,
    principal: PrincipalDep,
    services: ServicesDep,
    body: ViewerTokenRequest | None = None,
) -> ViewerToken:
    identity = None if body is None else body.identity
    return await services.sessions.viewer_token(principal, session_id, identity)


@router.delete(
    "/{session_id}",
    summary="Cancel a session",
    description=(
        "Deletes the session. The reply is the session as it was just before: the operator"
        " then records it as `canceled` (or stops its worker) and removes it; GET shows"
        " `canceled` meanwhile, 404 after. Cancelling a finished session changes nothing."
    ),
    responses=error_responses(401, 404, 429),
)
async def cancel_session(
    session_id: SessionId, principal: PrincipalDep, services: ServicesDep
) -> Session:
    return await services.sessions.cancel(principal, session_id)
