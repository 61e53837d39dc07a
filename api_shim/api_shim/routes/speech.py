"""/v1/sessions/{id}/speak and /interrupt: the avatar says text, and stops (#23)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from api_shim.deps import IdempotencyKeyDep, PrincipalDep, ServicesDep
from api_shim.routes.common import error_responses
from api_shim.routes.sessions import SessionId
from api_shim.sessions.speech_schemas import InterruptResult, SpeakRequest, SpeakTaskView

router = APIRouter(prefix="/v1/sessions", tags=["speech"])

TaskId = Annotated[
    str, Path(description="A `spk_...` id.", examples=["spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2B4"])
]


@router.post(
    "/{session_id}/speak",
    status_code=202,
    summary="Say text",
    description=(
        "Queues a speak task behind the earlier ones and returns it (`queued`); the worker says"
        " it in the room, lip-synced, and GET shows how far it got. A session that has not"
        " started yet speaks once its worker joins. Speaking restarts the idle timer. 400 for"
        " a voice or speed this installation lacks (`unknown_voice`,"
        " `voice_speed_out_of_range`), 409 `session_not_active` once the session is ending or"
        " finished, 429 `speech_queue_full` while 16 tasks are still to be said. Not"
        " idempotent: a retry after a lost reply queues the text again."
    ),
    responses=error_responses(400, 401, 404, 409, 429),
)
async def speak(
    session_id: SessionId,
    body: SpeakRequest,
    principal: PrincipalDep,
    services: ServicesDep,
) -> SpeakTaskView:
    return await services.speech.speak(principal, session_id, body)


@router.get(
    "/{session_id}/speak/{task_id}",
    summary="Get a speak task",
    description=(
        "The task's state as the worker reports it. A session keeps its last 32 tasks: an"
        " older finished one is 404 `speak_task_not_found`, as is an unknown id."
    ),
    responses=error_responses(401, 404, 429),
)
async def get_speak_task(
    session_id: SessionId, task_id: TaskId, principal: PrincipalDep, services: ServicesDep
) -> SpeakTaskView:
    return await services.speech.get_task(principal, session_id, task_id)


@router.post(
    "/{session_id}/interrupt",
    summary="Stop speaking",
    description=(
        "Cuts what the avatar is saying and clears every queued task; the reply lists them."
        " Safe to repeat: with nothing left to say it changes nothing and lists none. 409"
        " `session_not_active` once the session is ending or finished."
    ),
    responses=error_responses(400, 401, 404, 409, 429),
)
async def interrupt(
    session_id: SessionId,
    principal: PrincipalDep,
    services: ServicesDep,
    _key: IdempotencyKeyDep,
) -> InterruptResult:
    return await services.speech.interrupt(principal, session_id)
