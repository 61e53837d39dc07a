"""AgentHuman's `POST /v1/sessions` at `/compat/agenthuman/v1/sessions`: `x-api-key` with a
Facecast key, AgentHuman's body, its `{"success": true, ...}` answer and its error statuses."""

from __future__ import annotations

from fastapi import APIRouter

from api_shim.compat import agenthuman_schemas as ah
from api_shim.compat.agenthuman_translate import to_create_request, to_created, translate_error
from api_shim.compat.layer import PREFIX, CompatService, error_responses
from api_shim.deps import PrincipalDep, ServicesDep

NAME = "agenthuman"
SESSIONS_PATH = "/v1/sessions"

_ERRORS = {
    400: "The request is invalid: metadata not an object, aspect ratio, room platform, token,"
    " or an avatar image without exactly one clear face.",
    401: "The API key is missing or not valid.",
    403: "Your plan does not allow image avatars, or its minutes are used up.",
    404: "No such avatar for this API key.",
    413: "The body is too large.",
    429: "Too many requests, or your plan's concurrent sessions are all in use.",
    500: "Something went wrong on our side; quote the request id.",
    503: "No capacity right now; retry after Retry-After seconds.",
}


router = APIRouter()  # mounted under /compat/agenthuman, tagged, by compat.mount


@router.post(
    SESSIONS_PATH,
    status_code=201,
    summary="Create session (AgentHuman)",
    description=(
        "AgentHuman's create session: the session starts at once in your LiveKit room (Daily:"
        " not yet). Send your Facecast key as `x-api-key`."
    ),
    responses=error_responses(ah.AgentHumanErrorBody, _ERRORS),
)
async def create_session(
    body: ah.AgentHumanCreateSession, principal: PrincipalDep, services: ServicesDep
) -> ah.AgentHumanCreated:
    request = to_create_request(body, principal.plan, services.sessions.served_qualities)
    created = await services.sessions.create(principal, request, None)
    usage = await services.sessions.usage(principal)
    return to_created(created.session, usage)


SERVICE = CompatService(
    name=NAME,
    title="AgentHuman",
    description="AgentHuman's API: change the base URL to `/compat/agenthuman` and the key.",
    router=router,
    translate_error=translate_error,
    image_paths=(f"{PREFIX}/{NAME}{SESSIONS_PATH}",),
)
