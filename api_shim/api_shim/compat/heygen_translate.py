"""HeyGen Streaming <-> Facecast, pure. A HeyGen session is a Facecast session in a managed
room (Facecast creates the room and hands out the viewer's URL and token); HeyGen's quality
is a bitrate, Facecast's a renderer tier, so each HeyGen quality takes the best tier Facecast
renders at or below the one it names."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api_shim.compat import heygen_schemas as hg
from api_shim.compat.layer import TranslatedError, invalid_translation
from api_shim.errors import ErrorDetail, invalid_request
from api_shim.sessions.schemas import CreateSessionRequest, ManagedTransportView, Session
from api_shim.sessions.speech_schemas import SpeakRequest
from avatar_crds.capabilities import SERVED_WITHOUT_WEIGHTS
from avatar_crds.enums import Phase, Quality

# HeyGen's idle timeout when not disabled: 2 minutes.
IDLE_TIMEOUT_SECONDS = 120
# The tier each HeyGen quality would be, best first among those at or below it.
_TIERS: dict[hg.HeyGenQuality, tuple[Quality, ...]] = {
    hg.HeyGenQuality.HIGH: (Quality.PRO, Quality.STANDARD, Quality.LITE),
    hg.HeyGenQuality.MEDIUM: (Quality.STANDARD, Quality.LITE),
    hg.HeyGenQuality.LOW: (Quality.LITE,),
}
_LISTED_STATUS = {
    Phase.CREATED: "connecting",
    Phase.QUEUED: "connecting",
    Phase.STARTING: "connecting",
    Phase.RUNNING: "connected",
    Phase.ENDING: "closing",
}


def quality_of(
    quality: hg.HeyGenQuality, served: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS
) -> Quality:
    """The best tier for HeyGen's quality that this installation serves."""
    return next(tier for tier in _TIERS[quality] if tier in served)


def to_create_request(
    body: hg.HeyGenNewSession, served: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS
) -> CreateSessionRequest:
    if body.avatar_id == hg.DEFAULT_AVATAR:
        raise invalid_request(
            "avatar_required",
            "Facecast has no default avatar: pass avatar_id, the av_... id of one of your"
            " avatars (POST /v1/avatars).",
            "avatar_id",
        )
    voice = body.voice
    request: dict[str, Any] = {
        "avatar_id": body.avatar_id,
        "quality": quality_of(body.quality, served),
        "video_encoding": body.video_encoding,
        "idle_timeout_seconds": None if body.disable_idle_timeout else IDLE_TIMEOUT_SECONDS,
        "transport": {"type": "managed"},
    }
    if voice is not None and voice.voice_id is not None:
        request["voice"] = {"id": voice.voice_id, "speed": voice.rate}
    try:
        return CreateSessionRequest.model_validate(request)
    except ValidationError as error:
        raise invalid_translation(error) from None


def to_speak_request(body: hg.HeyGenTask) -> SpeakRequest:
    if body.task_type is not hg.HeyGenTaskType.REPEAT:
        raise invalid_request(
            "task_type_not_supported",
            f"task_type={body.task_type} answers with an LLM, and Facecast has none: send"
            " task_type=repeat with the text to say.",
            "task_type",
        )
    try:
        return SpeakRequest.model_validate({"text": body.text})
    except ValidationError as error:
        raise invalid_translation(error) from None


def to_new_session(session: Session) -> hg.HeyGenNewSessionResponse:
    transport = session.transport
    if not isinstance(transport, ManagedTransportView) or transport.client_token is None:
        raise ValueError("a HeyGen session is created in a managed room, with its token")
    return hg.HeyGenNewSessionResponse(
        data=hg.HeyGenNewSessionData(
            session_id=session.id,
            url=transport.url,
            access_token=transport.client_token,
            session_duration_limit=session.max_duration_seconds,
            is_paid=True,
            realtime_endpoint="",
        )
    )


def to_listed(sessions: list[Session]) -> hg.HeyGenListResponse:
    """The sessions still open, as HeyGen lists them."""
    return hg.HeyGenListResponse(
        data=hg.HeyGenSessionListData(
            sessions=[
                hg.HeyGenListedSession(
                    session_id=session.id,
                    status=_LISTED_STATUS[session.status],
                    created_at=int(session.created_at.timestamp()),
                )
                for session in sessions
                if session.status in _LISTED_STATUS
            ]
        )
    )


def translate_error(status: int, error: ErrorDetail) -> TranslatedError:
    return TranslatedError(status, hg.error_body(status, error.code, error.message))
