"""Closed vocabularies shared by the API, the operator and the worker."""

from __future__ import annotations

from enum import StrEnum


class Phase(StrEnum):
    """Where an AvatarSession is in its life. Terminal phases never change again."""

    CREATED = "created"
    QUEUED = "queued"
    STARTING = "starting"
    RUNNING = "running"
    ENDING = "ending"
    ENDED = "ended"
    FAILED = "failed"
    CANCELED = "canceled"

    @property
    def is_terminal(self) -> bool:
        return self in TERMINAL_PHASES


TERMINAL_PHASES = frozenset({Phase.ENDED, Phase.FAILED, Phase.CANCELED})


class Quality(StrEnum):
    """Renderer tier: `mock` synthetic frames, `lite` CPU warp, `standard`/`pro` GPU models."""

    MOCK = "mock"
    LITE = "lite"
    STANDARD = "standard"
    PRO = "pro"


class AspectRatio(StrEnum):
    LANDSCAPE = "4:3"
    PORTRAIT = "3:4"
    SQUARE = "1:1"


class VideoCodec(StrEnum):
    VP8 = "vp8"
    H264 = "h264"


class AudioSource(StrEnum):
    """How speech reaches the worker: LiveKit Agents byte streams or a subscribed audio track."""

    DATA_STREAM = "data_stream"
    TRACK = "track"


class TransportType(StrEnum):
    LIVEKIT = "livekit"
    DAILY = "daily"


class Visibility(StrEnum):
    """Who may use an Avatar: every tenant, or only its owner."""

    PUBLIC = "public"
    TENANT = "tenant"


class EndReason(StrEnum):
    """Why a session reached `ended`: it ran and stopped for an expected cause."""

    USER_ENDED = "user_ended"
    IDLE_TIMEOUT = "idle_timeout"
    MAX_DURATION_REACHED = "max_duration_reached"
    MINUTES_EXHAUSTED = "minutes_exhausted"


class FailureReason(StrEnum):
    """Why a session reached `failed`: something broke and the customer should know what."""

    UNSCHEDULABLE = "unschedulable"
    START_TIMEOUT = "start_timeout"
    WORKER_LOST = "worker_lost"
    POD_FAILED = "pod_failed"
    POD_DELETED = "pod_deleted"
    NODE_LOST = "node_lost"
    TRANSPORT_AUTH_FAILED = "transport_auth_failed"
    ROOM_UNREACHABLE = "room_unreachable"
    AVATAR_NOT_FOUND = "avatar_not_found"
    AVATAR_UNREADABLE = "avatar_unreadable"
    MODEL_UNAVAILABLE = "model_unavailable"
    INTERNAL_ERROR = "internal_error"


class CancelReason(StrEnum):
    """Why a session reached `canceled`: it was stopped before it ever ran."""

    USER_CANCELED = "user_canceled"


class WebhookEvent(StrEnum):
    """What a tenant's webhook endpoint is told about a session."""

    QUEUED = "session.queued"
    STARTED = "session.started"
    FIRST_FRAME = "session.first_frame"
    ENDED = "session.ended"  # canceled sessions too: `data.status` tells them apart
    FAILED = "session.failed"
    ENDING_SOON = "session.ending_soon"  # an idle or max-duration cutoff is N seconds away
    SPEAK_STARTED = "speak.started"
    SPEAK_FINISHED = "speak.finished"  # done, interrupted or failed: `data.speak.state` says


SessionReason = EndReason | FailureReason | CancelReason

REASONS_BY_PHASE: dict[Phase, frozenset[str]] = {
    Phase.ENDED: frozenset(EndReason),
    Phase.FAILED: frozenset(FailureReason),
    Phase.CANCELED: frozenset(CancelReason),
}
ALL_REASONS: tuple[str, ...] = (*EndReason, *FailureReason, *CancelReason)
