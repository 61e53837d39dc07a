"""HeyGen Streaming at `/compat/heygen/v1/streaming.*`: `X-Api-Key` with a Facecast key,
HeyGen's bodies and its `{"code", "message", "data"}` answers. Sessions run in managed rooms:
streaming.new answers the room's URL and a viewer token. What Facecast cannot do yet (the
avatar speaking a text, streaming.task) answers in HeyGen's error shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api_shim.compat import heygen_schemas as hg
from api_shim.compat.heygen_translate import to_create_request, to_listed, to_new_session
from api_shim.compat.heygen_translate import translate_error as translate_heygen_error
from api_shim.compat.layer import CompatService, TranslatedError, error_responses
from api_shim.deps import PrincipalDep, ServicesDep
from api_shim.errors import ApiError, ErrorDetail, ErrorType

NAME = "heygen"
# The most sessions streaming.list reports (HeyGen's page documents no paging).
LIST_LIMIT = 100
NOT_YET = 501

_ERRORS = {
    400: "The request is invalid (`avatar_required`, a voice rate out of range, or managed"
    " rooms are not configured on this installation).",
    401: "The API key is missing or not valid.",
    403: "Your plan does not include this, or its minutes are used up.",
    404: "No such avatar or session for this API key.",
    409: "The session has ended: nothing to keep alive.",
    413: "The body is too large.",
    429: "Too many requests, or your plan's concurrent sessions are all in use.",
    500: "Something went wrong on our side; quote the request id.",
    501: "Facecast cannot do this yet (streaming.task: the avatar speaking a text).",
    503: "No capacity, or the LiveKit server did not answer; retry after Retry-After seconds.",
}


def _responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    wanted = {*statuses, 401, 429, 500}
    return error_responses(hg.HeyGenError, {s: d for s, d in _ERRORS.items() if s in wanted})


router = APIRouter()  # mounted under /compat/heygen, tagged, by compat.mount


@router.post(
    "/v1/streaming.new",
    summary="New streaming session (HeyGen)",
    description=(
        "Creates a session in a room Facecast makes on the platform's LiveKit server, and"
        " answers its URL and a viewer token (valid for joining for a few minutes, never"
        " shown again). Send your Facecast key as `X-Api-Key`."
    ),
    responses=_responses(400, 403, 404, 413, 503),
)
async def streaming_new(
    body: hg.HeyGenNewSession, principal: PrincipalDep, services: ServicesDep
) -> hg.HeyGenNewSessionResponse:
    created = await services.sessions.create(principal, to_create_request(body), None)
    return to_new_session(created.session)


@router.post(
    "/v1/streaming.start",
    summary="Start streaming (HeyGen)",
    description="A Facecast session starts by itself: this only checks that it exists.",
    responses=_responses(400, 404),
)
async def streaming_start(
    body: hg.HeyGenSessionRef, principal: PrincipalDep, services: ServicesDep
) -> hg.HeyGenEmptyResponse:
    await services.sessions.get(principal, body.session_id)
    return hg.HeyGenEmptyResponse()


@router.post(
    "/v1/streaming.stop",
    summary="Stop streaming (HeyGen)",
    description="Ends the session; its room is deleted once it has ended.",
    responses=_responses(400, 404),
)
async def streaming_stop(
    body: hg.HeyGenSessionRef, principal: PrincipalDep, services: ServicesDep
) -> hg.HeyGenEmptyResponse:
    await services.sessions.end(principal, body.session_id)
    return hg.HeyGenEmptyResponse()


@router.post(
    "/v1/streaming.keep_alive",
    summary="Keep the session alive (HeyGen)",
    description="Resets the idle timeout.",
    responses=_responses(400, 404, 409),
)
async def streaming_keep_alive(
    body: hg.HeyGenSessionRef, principal: PrincipalDep, services: ServicesDep
) -> hg.HeyGenEmptyResponse:
    await services.sessions.keep_alive(principal, body.session_id)
    return hg.HeyGenEmptyResponse()


@router.get(
    "/v1/streaming.list",
    summary="List open sessions (HeyGen)",
    description=f"Your sessions not yet ended, newest first (at most {LIST_LIMIT}).",
    responses=_responses(),
)
async def streaming_list(principal: PrincipalDep, services: ServicesDep) -> hg.HeyGenListResponse:
    listed = await services.sessions.list_sessions(
        principal, status=None, limit=LIST_LIMIT, cursor=None
    )
    return to_listed(listed.data)


@router.post(
    "/v1/streaming.task",
    summary="Send a task (HeyGen): not available yet",
    description="Making the avatar speak a text needs Facecast's speak endpoint (#23): 501.",
    responses=_responses(400, 404, 501),
)
async def streaming_task(
    body: hg.HeyGenTask, principal: PrincipalDep, services: ServicesDep
) -> None:
    await services.sessions.get(principal, body.session_id)
    raise ApiError(
        ErrorType.UNPROCESSABLE,
        "speak_not_available",
        "streaming.task (the avatar speaking a text) is not available in Facecast yet; drive"
        " the avatar with an agent's audio in the room instead.",
        status=NOT_YET,
    )


@router.post(
    "/v1/streaming.interrupt",
    summary="Interrupt speaking (HeyGen): not available yet",
    description="Needs Facecast's speak endpoint (#23): 501.",
    responses=_responses(400, 404, 501),
)
async def streaming_interrupt(
    body: hg.HeyGenSessionRef, principal: PrincipalDep, services: ServicesDep
) -> None:
    await services.sessions.get(principal, body.session_id)
    raise ApiError(
        ErrorType.UNPROCESSABLE,
        "speak_not_available",
        "streaming.interrupt is not available in Facecast yet: there is no task to interrupt.",
        status=NOT_YET,
    )


_MESSAGES = {
    "managed_rooms_not_configured": (
        "HeyGen-style sessions run in rooms on a LiveKit server of the platform's, and this"
        " Facecast installation has none configured; ask its operator to set managed rooms up."
    ),
}


def translate_error(status: int, error: ErrorDetail) -> TranslatedError:
    """Facecast's messages name its own fields; these few are said in HeyGen's terms."""
    message = _MESSAGES.get(error.code)
    if message is not None:
        error = error.model_copy(update={"message": message, "param": None})
    return translate_heygen_error(status, error)


SERVICE = CompatService(
    name=NAME,
    title="HeyGen Streaming",
    description="HeyGen's Streaming API: change the base URL to `/compat/heygen` and the key.",
    router=router,
    translate_error=translate_error,
)
