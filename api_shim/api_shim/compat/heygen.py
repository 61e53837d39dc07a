"""HeyGen Streaming at `/compat/heygen/v1/streaming.*`: `X-Api-Key` with a Facecast key,
HeyGen's bodies and its `{"code", "message", "data"}` answers. Sessions run in managed rooms:
streaming.new answers the room's URL and a viewer token; streaming.task and
streaming.interrupt drive Facecast's speak service. What Facecast cannot do (a `chat` task)
answers in HeyGen's error shape."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter

from api_shim.compat import heygen_schemas as hg
from api_shim.compat.heygen_translate import (
    to_create_request,
    to_listed,
    to_new_session,
    to_speak_request,
)
from api_shim.compat.heygen_translate import translate_error as translate_heygen_error
from api_shim.compat.layer import CompatService, TranslatedError, error_responses
from api_shim.deps import PrincipalDep, ServicesDep
from api_shim.errors import ErrorDetail

NAME = "heygen"
# The most sessions streaming.list reports (HeyGen's page documents no paging).
LIST_LIMIT = 100

_ERRORS = {
    400: "The request is invalid (`avatar_required`, a voice rate out of range, or managed"
    " rooms are not configured on this installation).",
    401: "The API key is missing or not valid.",
    403: "Your plan does not include this, or its minutes are used up.",
    404: "No such avatar or session for this API key.",
    409: "The session is ending or has ended: nothing to keep alive or say.",
    413: "The body is too large.",
    429: "Too many requests, or your plan's concurrent sessions are all in use.",
    500: "Something went wrong on our side; quote the request id.",
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
    request = to_create_request(body, services.sessions.served_qualities)
    created = await services.sessions.create(principal, request, None)
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
    summary="Send a task (HeyGen)",
    description=(
        "`repeat` (the default): the avatar says `text`, after what it is already saying"
        " (Facecast's POST /v1/sessions/{id}/speak); `data.task_id` names the speak task."
        " `chat` (an LLM's answer to the text) is 400 `task_type_not_supported`: Facecast"
        " has no LLM."
    ),
    responses=_responses(400, 404, 409),
)
async def streaming_task(
    body: hg.HeyGenTask, principal: PrincipalDep, services: ServicesDep
) -> hg.HeyGenTaskResponse:
    task = await services.speech.speak(principal, body.session_id, to_speak_request(body))
    return hg.HeyGenTaskResponse(data=hg.HeyGenTaskData(task_id=task.id))


@router.post(
    "/v1/streaming.interrupt",
    summary="Interrupt speaking (HeyGen)",
    description="Cuts what the avatar is saying and drops every task still queued.",
    responses=_responses(400, 404, 409),
)
async def streaming_interrupt(
    body: hg.HeyGenSessionRef, principal: PrincipalDep, services: ServicesDep
) -> hg.HeyGenEmptyResponse:
    await services.speech.interrupt(principal, body.session_id)
    return hg.HeyGenEmptyResponse()


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
