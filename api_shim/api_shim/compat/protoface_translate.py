"""Protoface <-> Facecast, pure. Facecast's `/v1` is modelled on Protoface, so this is mostly
defaults (Protoface's quality, transport type and worker identity) and the few places the
two differ: Protoface answers a schema violation with 422, an unknown transport with
`transport.unsupported`, counts billable seconds in whole seconds, and calls a session that
is waiting for a worker `queued` from the moment it is created."""

from __future__ import annotations

from typing import Any

from pydantic import ValidationError

from api_shim.compat import protoface_schemas as pf
from api_shim.compat.layer import TranslatedError, invalid_translation
from api_shim.errors import ApiError, ErrorDetail, ErrorEnvelope, ErrorType
from api_shim.sessions.schemas import CreateSessionRequest, LiveKitTransportView, Session
from avatar_crds.capabilities import SUPPORTED_TRANSPORTS
from avatar_crds.enums import Phase, TransportType

# Facecast's codes for a body that breaks the schema: Protoface's "failed validation" (422).
VALIDATION_CODES = frozenset({"parameter_missing", "unknown_parameter", "invalid_parameter"})
UNSUPPORTED_TRANSPORT = "transport.unsupported"
# Facecast's code -> Protoface's (and its status), where they differ.
_RENAMED_CODES = {"transport_not_supported": (UNSUPPORTED_TRANSPORT, 400)}


def to_create_request(body: pf.ProtofaceCreateSession) -> CreateSessionRequest:
    transport = body.transport
    if transport.type not in {str(kind) for kind in SUPPORTED_TRANSPORTS}:
        raise ApiError(
            ErrorType.INVALID_REQUEST,
            UNSUPPORTED_TRANSPORT,
            f"transport.type={transport.type} is not available in Facecast; available:"
            f" {', '.join(sorted(SUPPORTED_TRANSPORTS))}.",
            param="transport.type",
        )
    request: dict[str, Any] = {
        "avatar_id": body.avatar_id,
        "quality": body.quality,
        "metadata": body.metadata,
        # Only if given: Facecast's defaults are Protoface's, and an omitted duration is
        # lowered to the plan's limit where a given one above it is refused.
        **body.model_dump(
            include={"idle_timeout_seconds", "max_duration_seconds"} & body.model_fields_set
        ),
        "transport": {
            "type": TransportType.LIVEKIT,
            "url": transport.url,
            "room_name": transport.room_name,
            "worker_token": transport.worker_token.get_secret_value(),
            "worker_identity": transport.worker_identity,
            "audio_source": transport.audio_source,
            "subscribe_to_identity": transport.subscribe_to_identity,
            "synthetic_audio_if_no_input": transport.synthetic_audio_if_no_input,
        },
    }
    try:
        return CreateSessionRequest.model_validate(request)
    except ValidationError as error:
        raise invalid_translation(error) from None


def to_session(session: Session) -> pf.ProtofaceSessionView:
    transport = session.transport
    if not isinstance(transport, LiveKitTransportView):
        raise ValueError(f"Protoface has no {transport.type} transport")
    failure = session.failure
    return pf.ProtofaceSessionView(
        id=session.id,
        avatar_id=session.avatar_id,
        # Admitted, and waiting for the operator to queue it: Protoface says `queued`.
        status=Phase.QUEUED if session.status is Phase.CREATED else session.status,
        quality=session.quality,
        transport=transport,
        idle_timeout_seconds=session.idle_timeout_seconds,
        max_duration_seconds=session.max_duration_seconds,
        metadata=session.metadata,
        created_at=session.created_at,
        started_at=session.started_at,
        first_frame_at=session.first_frame_at,
        ended_at=session.ended_at,
        failed_at=session.failed_at,
        failure=None
        if failure is None
        else pf.ProtofaceFailure(code=failure.code, message=failure.message),
        usage=pf.ProtofaceUsageView(
            billable_seconds=int(session.usage.billable_seconds), frames=session.usage.frames
        ),
    )


def translate_error(status: int, error: ErrorDetail) -> TranslatedError:
    code, new_status = _RENAMED_CODES.get(error.code, (error.code, status))
    error_type = error.type
    if status == 400 and error.code in VALIDATION_CODES:
        new_status = 422
    if error.code in _RENAMED_CODES:
        error_type = ErrorType.INVALID_REQUEST
    detail = error.model_copy(update={"code": code, "type": error_type})
    return TranslatedError(new_status, ErrorEnvelope(error=detail).model_dump(mode="json"))
