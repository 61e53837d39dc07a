"""Public request <-> AvatarSession resource. Pure: no I/O, no clock, no randomness."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from api_shim import managed_rooms
from api_shim.sessions.schemas import (
    CreateSessionRequest,
    DailyTransportRequest,
    DailyTransportView,
    Failure,
    LiveKitTransportView,
    ManagedTransportRequest,
    ManagedTransportView,
    Session,
    SessionUsage,
    VideoEncoding,
    Voice,
)
from avatar_crds import contract
from avatar_crds.enums import Phase, Quality, TransportType, VideoCodec
from avatar_crds.ids import AVATAR_PREFIX, to_public_id, to_resource_name
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.messages import fit_message
from avatar_crds.meta import ObjectMeta, owner_reference
from avatar_crds.phases import phase_of
from avatar_crds.session import (
    AvatarSession,
    AvatarSessionSpec,
    DailyTransport,
    LiveKitTransport,
    SecretKeyRef,
    Transport,
    VideoSettings,
)
from avatar_crds.speech import Voice as SpecVoice

COMPONENT_SESSION = "session"
_CODEC_BY_ENCODING = {VideoEncoding.VP8: VideoCodec.VP8, VideoEncoding.H264: VideoCodec.H264}
_ENCODING_BY_CODEC = {codec: encoding for encoding, codec in _CODEC_BY_ENCODING.items()}


def quality_of(request: CreateSessionRequest) -> Quality:
    """The request's tier, once the service has filled in the installation's default."""
    if request.quality is None:
        raise ValueError("the session service resolves an omitted quality before this")
    return request.quality


def build_session(
    request: CreateSessionRequest,
    *,
    name: str,
    namespace: str,
    tenant: str,
    max_duration_seconds: int,
    extra_labels: dict[str, str] | None = None,
    annotations: dict[str, str] | None = None,
) -> AvatarSession:
    """The resource for a validated request; `max_duration_seconds` is already capped by plan."""
    spec = AvatarSessionSpec(
        tenant=tenant,
        # An inline avatar is made (and named here) before the session: see SessionService.
        avatar_ref=to_resource_name(request.avatar_id or "", AVATAR_PREFIX),
        quality=quality_of(request),
        aspect_ratio=request.aspect_ratio,
        video=VideoSettings(codec=_CODEC_BY_ENCODING[request.video_encoding]),
        voice=None
        if request.voice is None
        else SpecVoice(id=request.voice.id, speed=request.voice.speed),
        idle_timeout_seconds=request.idle_timeout_seconds,
        max_duration_seconds=max_duration_seconds,
        transport=_transport_spec(request),
        token_secret_ref=SecretKeyRef(
            name=contract.token_secret_name(name), key=contract.TOKEN_SECRET_KEY
        ),
        metadata=request.metadata,
    )
    meta = ObjectMeta(
        name=name,
        namespace=namespace,
        labels={
            **contract.session_labels(name, tenant, COMPONENT_SESSION),
            **(extra_labels or {}),
        },
        annotations=dict(annotations or {}),
    )
    return AvatarSession(metadata=meta, spec=spec)


def _transport_spec(request: CreateSessionRequest) -> Transport:
    """Everything about the room except the token, which goes to the Secret."""
    wanted = request.transport
    if isinstance(wanted, DailyTransportRequest):
        return Transport(type=TransportType.DAILY, daily=DailyTransport(url=wanted.url))
    if isinstance(wanted, ManagedTransportRequest):
        raise ValueError("a managed room is made a LiveKit one (SessionService) before this")
    livekit = LiveKitTransport(
        url=wanted.url,
        room_name=wanted.room_name,
        worker_identity=wanted.worker_identity,
        audio_source=wanted.audio_source,
        subscribe_to_identity=wanted.subscribe_to_identity,
        synthetic_audio_if_no_input=wanted.synthetic_audio_if_no_input,
    )
    return Transport(type=TransportType.LIVEKIT, livekit=livekit)


def session_body(session: AvatarSession) -> dict[str, Any]:
    """What to POST to the API server: no status, which only the operator writes."""
    body = session.to_k8s()
    body.pop("status", None)
    body["metadata"] = {
        key: value
        for key, value in session.metadata.model_dump(by_alias=True, exclude_none=True).items()
        if key in ("name", "namespace", "labels", "annotations")
    }
    return body


def token_secret_body(
    *, session_name: str, session_uid: str, namespace: str, tenant: str, token: str
) -> dict[str, Any]:
    """The worker token Secret, owned by the session so the garbage collector removes it too."""
    owner = owner_reference(AVATAR_SESSION.kind, session_name, session_uid)
    return {
        "apiVersion": "v1",
        "kind": "Secret",
        "metadata": {
            "name": contract.token_secret_name(session_name),
            "namespace": namespace,
            "labels": contract.session_labels(session_name, tenant, COMPONENT_SESSION),
            "ownerReferences": [owner],
        },
        "type": "Opaque",
        "immutable": True,
        "stringData": {contract.TOKEN_SECRET_KEY: token},
    }


# --- resource -> public view -------------------------------------------------------------------


def to_public_session(session: AvatarSession) -> Session:
    spec, status = session.spec, session.status
    phase = phase_of(session)
    worker = status.worker
    reason = None if status.reason is None else str(status.reason)
    voice = None if spec.voice is None else Voice(id=spec.voice.id, speed=spec.voice.speed)
    finished = status.finished_at
    return Session(
        id=to_public_id(_name(session)),
        status=phase,
        avatar_id=to_public_id(spec.avatar_ref),
        quality=spec.quality,
        aspect_ratio=spec.aspect_ratio,
        video_encoding=_ENCODING_BY_CODEC[spec.video.codec],
        voice=voice,
        transport=_managed_view(session) or _transport_view(spec.transport),
        idle_timeout_seconds=spec.idle_timeout_seconds,
        max_duration_seconds=spec.max_duration_seconds,
        metadata=spec.metadata,
        created_at=_created_at(session),
        queued_at=status.queued_at,
        started_at=status.running_at,
        first_frame_at=None if worker is None else worker.first_frame_at,
        end_requested_at=spec.end_requested_at,
        keep_alive_at=spec.keep_alive_at,
        ended_at=finished if phase in (Phase.ENDED, Phase.CANCELED) else None,
        failed_at=finished if phase is Phase.FAILED else None,
        end_reason=reason if phase in (Phase.ENDED, Phase.CANCELED) else None,
        # Redacted again: a status written by an older operator may still quote a secret.
        failure=Failure(code=reason or "internal_error", message=fit_message(status.message or ""))
        if phase is Phase.FAILED
        else None,
        usage=SessionUsage(
            billable_seconds=0.0 if worker is None else worker.billable_seconds,
            frames=0 if worker is None else worker.frames,
        ),
        expiration=None if status.deadlines is None else status.deadlines.max_duration_at,
    )


def _managed_view(session: AvatarSession) -> ManagedTransportView | None:
    """A managed room's session as its creator asked for it (its client token is never
    stored: the create response alone carries one)."""
    livekit = session.spec.transport.livekit
    if livekit is None or not managed_rooms.is_managed(session.metadata.labels):
        return None
    return ManagedTransportView(
        url=session.metadata.annotations.get(managed_rooms.ANNOTATION_CLIENT_URL, livekit.url),
        room_name=livekit.room_name,
        client_token=None,
        worker_identity=livekit.worker_identity,
        audio_source=livekit.audio_source,
        subscribe_to_identity=livekit.subscribe_to_identity,
        synthetic_audio_if_no_input=livekit.synthetic_audio_if_no_input,
    )


def _transport_view(transport: Transport) -> LiveKitTransportView | DailyTransportView:
    if transport.type is TransportType.DAILY and transport.daily is not None:
        return DailyTransportView(url=transport.daily.url)
    livekit = transport.livekit
    if livekit is None:  # the CRD's CEL rule makes this impossible; fail loudly if it happens
        raise ValueError("transport has neither a livekit nor a daily room")
    return LiveKitTransportView(
        url=livekit.url,
        room_name=livekit.room_name,
        worker_identity=livekit.worker_identity,
        audio_source=livekit.audio_source,
        subscribe_to_identity=livekit.subscribe_to_identity,
        synthetic_audio_if_no_input=livekit.synthetic_audio_if_no_input,
    )


def _name(session: AvatarSession) -> str:
    if session.metadata.name is None:
        raise ValueError("an AvatarSession from the API server always has a name")
    return session.metadata.name


def _created_at(session: AvatarSession) -> datetime:
    stamp = session.metadata.creation_timestamp
    if stamp is None:
        raise ValueError("an AvatarSession from the API server always has a creationTimestamp")
    return datetime.fromisoformat(stamp)
