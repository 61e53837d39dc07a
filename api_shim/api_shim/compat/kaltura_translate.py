"""Kaltura Avatar <-> Facecast, pure. A Kaltura session is a Facecast session in a managed
room; the session token that Kaltura's create answers is minted by Facecast
(`kaltura_token.py`) and lives as long as the session can. Kaltura has no quality: the session
gets the best tier Facecast renders that the tenant's plan allows."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api_shim.compat import kaltura_schemas as kt
from api_shim.compat.layer import TranslatedError, invalid_translation, rename_params
from api_shim.errors import ErrorDetail
from api_shim.sessions.schemas import CreateSessionRequest, Session
from api_shim.sessions.speech_schemas import SpeakRequest
from api_shim.sessions.viewer_schemas import ViewerToken
from avatar_crds.capabilities import SERVED_WITHOUT_WEIGHTS
from avatar_crds.enums import Quality
from avatar_crds.tenant import Plan
from avatar_crds.voices import DEFAULT_VOICE_ID

# Best first.
_TIERS = (Quality.PRO, Quality.STANDARD, Quality.LITE, Quality.MOCK)
# A session token outlives its session's longest run by this much, so that end-session and
# keep-alive still answer (409, or nothing to end) near the very end.
TOKEN_GRACE_SECONDS = 300
# Facecast's field names -> Kaltura's, for `param` and messages.
_NAMES = {
    "avatar_id": "visualConfig.avatarId",
    "voice.id": "voiceConfig.id",
    "voice.speed": "voiceConfig.speed",
}
_MESSAGES = {
    "managed_rooms_not_configured": (
        "Kaltura-style sessions run in rooms on a LiveKit server of the platform's, and this"
        " Facecast installation has none configured; ask its operator to set managed rooms up."
    ),
}


def quality_for(plan: Plan, served: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS) -> Quality:
    """The best tier this installation serves that the plan allows; none: the best it serves,
    which the plan then refuses (403) with the tiers it does allow."""
    renderable = [tier for tier in _TIERS if tier in served]
    allowed = [tier for tier in renderable if tier in plan.allowed_qualities]
    return (allowed or renderable)[0]


def to_create_request(
    body: kt.KalturaCreateSession, plan: Plan, served: frozenset[Quality] = SERVED_WITHOUT_WEIGHTS
) -> CreateSessionRequest:
    request: dict[str, Any] = {
        "avatar_id": body.visual_config.avatar_id,
        "quality": quality_for(plan, served),
        "transport": {"type": "managed"},
    }
    voice = body.voice_config
    if voice is not None and (voice.id is not None or voice.speed is not None):
        request["voice"] = {
            "id": voice.id or DEFAULT_VOICE_ID,
            **({} if voice.speed is None else {"speed": voice.speed}),
        }
    try:
        return CreateSessionRequest.model_validate(request)
    except ValidationError as error:
        raise invalid_translation(error) from None


def token_expiry(session: Session) -> int:
    """Unix seconds: the session's longest possible end, and a little more."""
    started = int(session.created_at.timestamp())
    return started + session.max_duration_seconds + TOKEN_GRACE_SECONDS


def to_speak_request(body: kt.KalturaSayText) -> SpeakRequest:
    return SpeakRequest(text=body.text)


def to_client_config(token: ViewerToken) -> kt.KalturaClientConfig:
    return kt.KalturaClientConfig(
        session_id=token.session_id,
        webrtc_config=kt.KalturaWebRtcConfig(
            url=token.url,
            room_name=token.room_name,
            token=token.token,
            identity=token.identity,
            expires_at=int(token.expires_at.timestamp()),
        ),
    )


def translate_error(status: int, error: ErrorDetail) -> TranslatedError:
    """Kaltura's `{"success": false, "error"}` with the page's messages for its three statuses
    (a 403 says why after it), Facecast's message (in Kaltura's field names) for the others."""
    if status == 500:
        return TranslatedError(status, kt.error_body(kt.INTERNAL_ERROR))
    if error.code == "invalid_api_key":
        return TranslatedError(status, kt.error_body(kt.INVALID_SESSION))
    message = _MESSAGES.get(error.code) or rename_params(error, _NAMES).message
    if status == 403:
        message = f"{kt.NOT_AUTHORIZED}: {message}"
    return TranslatedError(status, kt.error_body(message))
