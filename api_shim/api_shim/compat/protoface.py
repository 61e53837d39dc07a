"""Protoface's `POST /v1/sessions` and `GET /v1/sessions/{id}` at `/compat/protoface/v1/...`:
`Authorization: Bearer` with a Facecast key, Protoface's body and session resource, and its
error envelope (Facecast's own) with Protoface's statuses and codes."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Path

from api_shim.compat import protoface_schemas as pf
from api_shim.compat.layer import CompatService, error_responses
from api_shim.compat.protoface_translate import to_create_request, to_session, translate_error
from api_shim.deps import PrincipalDep, ServicesDep
from api_shim.errors import ErrorEnvelope

NAME = "protoface"

_ERRORS = {
    400: "Invalid request body (`transport.unsupported`, `transport_url_forbidden`, ...).",
    401: "Missing or invalid API key.",
    403: "Your plan does not include the quality, or its minutes are used up.",
    404: "No such avatar or session for this API key.",
    413: "The body is too large.",
    422: "Request body failed validation, or a quality tier Facecast does not render yet.",
    429: "Rate limit exceeded, or your plan's concurrent sessions are all in use.",
    500: "Something went wrong on our side; quote the request id.",
    503: "No worker capacity (`at_capacity`); retry after Retry-After seconds.",
}
SessionId = Annotated[str, Path(description="A `sess_...` id.")]


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    wanted = {*statuses, 401, 429, 500, 503}
    return error_responses(ErrorEnvelope, {s: d for s, d in _ERRORS.items() if s in wanted})


router = APIRouter()  # mounted under /compat/protoface, tagged, by compat.mount


@router.post(
    "/v1/sessions",
    status_code=201,
    summary="Create a session (Protoface)",
    description=(
        "Protoface's create: returns at once with status `queued`; poll GET"
        " /v1/sessions/{id}. Send your Facecast key as `Authorization: Bearer`."
    ),
    responses=_responses(400, 403, 404, 413, 422),
)
async def create_session(
    body: pf.ProtofaceCreateSession, principal: PrincipalDep, services: ServicesDep
) -> pf.ProtofaceSessionView:
    created = await services.sessions.create(principal, to_create_request(body), None)
    return to_session(created.session)


@router.get(
    "/v1/sessions/{session_id}",
    summary="Get a session (Protoface)",
    responses=_responses(404),
)
async def get_session(
    session_id: SessionId, principal: PrincipalDep, services: ServicesDep
) -> pf.ProtofaceSessionView:
    return to_session(await services.sessions.get(principal, session_id))


SERVICE = CompatService(
    name=NAME,
    title="Protoface",
    description="Protoface's API: change the base URL to `/compat/protoface` and the key.",
    router=router,
    translate_error=translate_error,
)
