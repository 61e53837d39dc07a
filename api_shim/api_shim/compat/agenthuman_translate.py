"""AgentHuman <-> Facecast, pure: the request into a `CreateSessionRequest`, the session and
usage into AgentHuman's response, Facecast's errors into AgentHuman's."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from pydantic import ValidationError

from api_shim.avatars.schemas import AVATAR_ID_PATTERN
from api_shim.compat import agenthuman_schemas as ah
from api_shim.compat.layer import TranslatedError, invalid_translation, rename_params
from api_shim.compat.livekit_token import TokenClaimsError, room_grant
from api_shim.errors import ErrorDetail, invalid_request, not_found
from api_shim.schemas import Usage
from api_shim.sessions.schemas import CreateSessionRequest, Session
from avatar_crds.capabilities import SERVED_WITHOUT_WEIGHTS
from avatar_crds.enums import Phase, Quality
from avatar_crds.tenant import Plan

# Facecast's request fields -> where the AgentHuman request had them.
PARAM_NAMES = {
    "avatar_id": "avatar",
    "avatar.image_url": "avatar",
    "avatar.image_base64": "avatar",
    "transport.type": "room.platform",
    "transport.url": "room.url",
    "transport.worker_token": "room.token",
    "transport.room_name": "room.token",  # read from the token
    "transport.worker_identity": "room.token",
}
# AgentHuman documents 400 for every refused request; Facecast's 422 ("valid, but not
# possible here") is one of those.
STATUS_BY_FACECAST = {422: 400}
_ENDED = frozenset({Phase.ENDED, Phase.FAILED, Phase.CANCELED})
# LiveKit clients accept the server's http(s) address too; the worker needs ws(s).
_HTTP_SCHEME = re.compile(r"^http(s?)://", re.IGNORECASE)
_BEST_FIRST: list[Quality] = list(Quality)[::-1]  # the enum lists the tiers cheapest first


def session_quality(plan: Plan, served: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS) -> Quality:
    """AgentHuman has one quality: the best tier this installation serves that the plan
    includes (the best served one if none is, which the plan check then refuses, naming the
    plan's)."""
    renderable = [tier for tier in _BEST_FIRST if tier in served]
    allowed = [tier for tier in renderable if tier in plan.allowed_qualities]
    return (allowed or renderable)[0]


def to_create_request(
    body: ah.AgentHumanCreateSession,
    plan: Plan,
    served: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS,
) -> CreateSessionRequest:
    """ApiError (Facecast's field names; the error translation renames them) if Facecast
    cannot take it. AgentHuman sessions end at their plan's duration limit and have no idle
    timeout: so here."""
    request: dict[str, Any] = {
        **_avatar(body.avatar),
        "quality": str(session_quality(plan, served)),
        "aspect_ratio": body.aspect_ratio,
        "transport": _transport(body.room),
        "idle_timeout_seconds": None,
        "max_duration_seconds": plan.max_session_duration_seconds,
        "metadata": body.metadata,
    }
    try:
        return CreateSessionRequest.model_validate(request)
    except ValidationError as error:
        raise invalid_translation(error) from None


def _avatar(avatar: str) -> dict[str, Any]:
    if avatar.lower().startswith("data:"):
        return {"avatar": {"image_base64": avatar}}
    if _HTTP_SCHEME.match(avatar):
        return {"avatar": {"image_url": avatar}}
    if re.fullmatch(AVATAR_ID_PATTERN, avatar):
        return {"avatar_id": avatar}
    raise not_found(
        "avatar_not_found",
        f"No avatar {avatar[:64]}. Facecast avatar ids start with av_: upload the face once"
        " with POST /v1/avatars and pass its id (or pass an image URL or base64 image).",
        param="avatar_id",
    )


def _transport(room: ah.AgentHumanRoom) -> dict[str, Any]:
    token = room.token.get_secret_value()
    if room.platform == "daily":
        return {"type": "daily", "url": room.url, "worker_token": token}
    try:
        grant = room_grant(token)
    except TokenClaimsError as error:
        raise invalid_request(
            "invalid_room_token",
            f"room.token {error}: Facecast reads the LiveKit room's name from the token.",
            param="transport.worker_token",
        ) from None
    transport: dict[str, Any] = {
        "type": "livekit",
        "url": _HTTP_SCHEME.sub(lambda m: f"ws{m.group(1)}://", room.url),
        "room_name": grant.room,
        "worker_token": token,
    }
    if grant.identity is not None:
        transport["worker_identity"] = grant.identity
    return transport


def to_created(session: Session, usage: Usage) -> ah.AgentHumanCreated:
    ended_at = session.ended_at or session.failed_at
    expiration = session.expiration or session.created_at + timedelta(
        seconds=session.max_duration_seconds
    )
    return ah.AgentHumanCreated(
        session=ah.AgentHumanSessionView(
            session_id=session.id,
            status="ended" if session.status in _ENDED else "started",
            session_token=ah.NO_SESSION_TOKEN,
            # AgentHuman starts a session as it creates it.
            started_at=session.created_at,
            ended_at=ended_at,
            expiration=expiration,
            metadata=session.metadata,
        ),
        usage=ah.AgentHumanUsageView(
            concurrency=ah.AgentHumanConcurrencyView(
                current=usage.concurrency.current,
                max=usage.concurrency.max,
                available=usage.concurrency.available,
            ),
            minutes=ah.AgentHumanMinutesView(total_remaining=usage.minutes.total_remaining),
        ),
    )


def translate_error(status: int, error: ErrorDetail) -> TranslatedError:
    renamed = rename_params(error, PARAM_NAMES)
    body = ah.AgentHumanErrorBody(
        error=renamed.code,
        message=renamed.message,
        param=renamed.param,
        request_id=error.request_id,
    )
    return TranslatedError(STATUS_BY_FACECAST.get(status, status), body.model_dump(mode="json"))
