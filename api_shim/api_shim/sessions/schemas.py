"""The public session models: what POST /v1/sessions takes and what the session endpoints
return (the conventions are in `api_shim.schemas`)."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, Literal

from pydantic import (
    AfterValidator,
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    SecretStr,
    WithJsonSchema,
    field_validator,
    model_validator,
)

from api_shim.avatars.schemas import (
    AVATAR_ID_PATTERN,
    InlineAvatar,
    exactly_one_given,
    exactly_one_of,
)
from api_shim.schemas import RequestModel, ResponseModel
from avatar_crds.capabilities import RENDERABLE_QUALITIES
from avatar_crds.enums import AspectRatio, AudioSource, Phase, Quality
from avatar_crds.ids import SESSION_PREFIX, public_id_pattern
from avatar_crds.session import (
    DEFAULT_IDLE_TIMEOUT_SECONDS,
    DEFAULT_MAX_DURATION_SECONDS,
    METADATA_MAX_BYTES,
    METADATA_MAX_KEYS,
    RESERVED_METADATA_PREFIX,
    HttpsUrl,
    Metadata,
)
from avatar_crds.speech import VOICE_SPEED_MAX, VOICE_SPEED_MIN
from avatar_crds.transport_rules import (
    MAX_ROOM_NAME_BYTES,
    TRANSPORT_URL_PATTERN,
    TransportUrlError,
    parse_transport_url,
    validate_room_name,
)
from avatar_crds.voices import DEFAULT_VOICE_ID

REDACTED: Literal["[redacted]"] = "[redacted]"
DEFAULT_WORKER_IDENTITY = "facecast-worker"
SESSION_ID_PATTERN = public_id_pattern(SESSION_PREFIX)

Identity = Annotated[str, Field(min_length=1, max_length=128)]
WorkerToken = Annotated[
    SecretStr,
    Field(
        min_length=1,
        max_length=8192,
        description="Write-only: stored in a Kubernetes Secret, never returned or logged.",
    ),
]
StrictBool = Annotated[bool, Field(strict=True)]


def _whole_number(value: object) -> object:
    """JSON has one number type: `30.0` is the integer 30, for JSON Schema as for us. Strings
    and fractions stay refused."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


# Last in an `Annotated[int, Field(strict=True, ...), WHOLE_NUMBER]`, so that it runs first and
# the constraints still appear as minimum/maximum in the JSON schema: an integer as JSON Schema
# means it, 30 and 30.0, never "30" or 30.5.
WHOLE_NUMBER = BeforeValidator(_whole_number)


class VideoEncoding(StrEnum):
    H264 = "H264"
    VP8 = "VP8"


# --- requests ----------------------------------------------------------------------------------


class LiveKitTransportRequest(RequestModel):
    """Your own LiveKit room; the worker joins it with `worker_token`."""

    type: Literal["livekit"] = Field(
        default="livekit", description="The default: a transport without `type` is this one."
    )
    url: Annotated[str, Field(max_length=2048, pattern=TRANSPORT_URL_PATTERN)] = Field(
        description=(
            "`wss://` (or `ws://`) URL of your LiveKit server: a public host name or address"
            " (400 `transport_url_forbidden` for private, loopback, link-local or cluster"
            " addresses, unless the platform allows its own LiveKit)."
        )
    )
    # The document's pattern says what validate_room_name refuses (C0 and C1 controls), so a
    # schema-valid name is never refused; the validator, not the pattern, checks it, so the
    # refusal names the character.
    room_name: Annotated[
        str,
        Field(
            min_length=1,
            max_length=256,
            json_schema_extra={"pattern": r"^[^\x00-\x1f\x7f-\x9f]+$"},
        ),
        AfterValidator(validate_room_name),
    ] = Field(
        description=(
            f"At most {MAX_ROOM_NAME_BYTES} bytes as UTF-8 (LiveKit's limit), no control"
            " characters."
        )
    )
    worker_token: WorkerToken
    worker_identity: Identity = Field(
        default=DEFAULT_WORKER_IDENTITY,
        description=(
            f"The identity the worker joins the room as; default `{DEFAULT_WORKER_IDENTITY}`."
            " LiveKit takes the identity from the token: mint `worker_token` for this one."
        ),
    )
    audio_source: AudioSource = Field(
        default=AudioSource.DATA_STREAM,
        description="`data_stream`: LiveKit Agents avatar protocol; `track`: a subscribed track.",
    )
    subscribe_to_identity: Identity | None = Field(
        default=None, description="Participant whose audio to lip-sync (for `audio_source=track`)."
    )
    synthetic_audio_if_no_input: StrictBool = False

    # Before the pattern: its message would be a regular expression, this one says what is wrong.
    @field_validator("url", mode="before")
    @classmethod
    def _joinable_url(cls, value: object) -> object:
        if isinstance(value, str):
            try:
                parse_transport_url(value)
            except TransportUrlError as error:
                raise ValueError(str(error)) from None
        return value


class DailyTransportRequest(RequestModel):
    """A Daily room; the worker joins it with `worker_token` (a Daily meeting token). Not
    available yet: refused with 422 `transport_not_supported`."""

    type: Literal["daily"]
    url: HttpsUrl = Field(description="`https://` URL of the Daily room.")
    worker_token: WorkerToken


class ManagedTransportRequest(RequestModel):
    """A room Facecast creates on the platform's LiveKit server (when the platform has one:
    else 400 `managed_rooms_not_configured`). The create response carries the URL and a
    short-lived token for your viewer; the room is deleted when the session ends."""

    type: Literal["managed"]
    audio_source: AudioSource = AudioSource.DATA_STREAM
    subscribe_to_identity: Identity | None = None
    synthetic_audio_if_no_input: StrictBool = False
    client_identity: Identity = Field(
        default="facecast-client", description="The identity the viewer's token joins as."
    )
    client_can_publish: StrictBool = Field(
        default=False,
        description=(
            "Let the viewer's token publish (audio, data) too; by default it may only"
            " subscribe, so a token leaked from a browser cannot speak for the avatar."
        ),
    )


def _livekit_by_default(value: object) -> object:
    """A transport without `type` is a LiveKit one (Protoface's rule): the discriminator needs
    the tag before it can pick the model whose default says so."""
    if isinstance(value, dict) and "type" not in value:
        return {**value, "type": "livekit"}
    return value


TransportRequest = Annotated[
    LiveKitTransportRequest | DailyTransportRequest | ManagedTransportRequest,
    Field(discriminator="type"),
    BeforeValidator(_livekit_by_default),
]


class Voice(BaseModel):
    model_config = ConfigDict(extra="forbid")

    id: Annotated[str, Field(min_length=1, max_length=64)] = Field(
        description="One of GET /v1/voices (else 400 `unknown_voice`)."
    )
    speed: Annotated[float, Field(strict=True, ge=VOICE_SPEED_MIN, le=VOICE_SPEED_MAX)] = Field(
        default=1.0,
        description=(
            "1.0 is the voice's normal rate; within the voice's `speed` range"
            " (else 400 `voice_speed_out_of_range`)."
        ),
    )


_RENDERABLE = [str(tier) for tier in Quality if tier in RENDERABLE_QUALITIES]

_CREATE_EXAMPLE: dict[str, Any] = {
    "avatar_id": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
    "quality": "lite",
    "aspect_ratio": "4:3",
    "transport": {
        "type": "livekit",
        "url": "wss://rtc.example.com",
        "room_name": "support-42",
        "worker_token": "eyJhbGciOiJIUzI1NiJ9...",
    },
    "idle_timeout_seconds": 30,
    "max_duration_seconds": 600,
    "metadata": {"ticket": "T-1234"},
}


class CreateSessionRequest(RequestModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [_CREATE_EXAMPLE],
            **exactly_one_of("avatar_id", "avatar"),
        },
    )

    avatar_id: Annotated[
        str | None,
        Field(pattern=AVATAR_ID_PATTERN),
        WithJsonSchema({"type": "string", "pattern": AVATAR_ID_PATTERN}),
    ] = Field(default=None, description="An `av_...` id. Give this or `avatar`, not both.")
    avatar: Annotated[InlineAvatar | None, WithJsonSchema(InlineAvatar.model_json_schema())] = (
        Field(
            default=None,
            description=(
                "Instead of `avatar_id`: the portrait itself, by `image_url` or `image_base64`, if"
                " your plan allows it (else 403 `url_avatars_not_allowed` /"
                " `base64_avatars_not_allowed`). It is checked like POST /v1/avatars and becomes"
                " one of your avatars; the session's `avatar_id` names it."
            ),
        )
    )
    # The document lists the tiers this version renders; an installation serves some of them
    # and refuses the others with 422 `quality_not_available`, naming the ones it serves.
    quality: Annotated[Quality | None, WithJsonSchema({"type": "string", "enum": _RENDERABLE})] = (
        Field(
            default=None,
            description=(
                "Renderer tier; your plan lists the ones you may use. `standard` and `pro` only"
                " where the installation has the model weights (else 422 `quality_not_available`)."
                " Omitted: `standard` where the installation serves it, else `lite`."
            ),
        )
    )
    aspect_ratio: AspectRatio = AspectRatio.LANDSCAPE
    video_encoding: VideoEncoding = VideoEncoding.VP8
    voice: Voice | None = Field(
        default=None,
        description=f"The voice the avatar speaks with; none: `{DEFAULT_VOICE_ID}`.",
    )
    idle_timeout_seconds: Annotated[int, Field(strict=True, ge=1, le=600), WHOLE_NUMBER] | None = (
        Field(
            default=DEFAULT_IDLE_TIMEOUT_SECONDS,
            description="End after this many seconds without audio; `null` disables it.",
        )
    )
    max_duration_seconds: Annotated[int, Field(strict=True, ge=1, le=3600), WHOLE_NUMBER] = Field(
        default=DEFAULT_MAX_DURATION_SECONDS,
        description=(
            "Hard limit on the running time. Omitted: 600, lowered to your plan's maximum."
            " Set above your plan's maximum: 422 `max_duration_exceeds_plan`."
        ),
    )
    transport: TransportRequest
    metadata: Metadata = Field(
        default_factory=dict,
        description=(
            f"Your JSON object, echoed back and in webhooks: at most {METADATA_MAX_BYTES} bytes"
            f" and {METADATA_MAX_KEYS} keys; keys starting with `{RESERVED_METADATA_PREFIX}`"
            " are reserved."
        ),
    )

    @model_validator(mode="after")
    def _one_avatar(self) -> CreateSessionRequest:
        exactly_one_given(self, ("avatar_id", "avatar"), "a session")
        return self


# --- responses ---------------------------------------------------------------------------------


class LiveKitTransportView(ResponseModel):
    type: Literal["livekit"] = "livekit"
    url: str
    room_name: str
    worker_identity: str
    audio_source: AudioSource
    subscribe_to_identity: str | None
    synthetic_audio_if_no_input: bool
    worker_token: Literal["[redacted]"] = REDACTED


class DailyTransportView(ResponseModel):
    type: Literal["daily"] = "daily"
    url: str
    worker_token: Literal["[redacted]"] = REDACTED


class ManagedTransportView(ResponseModel):
    type: Literal["managed"] = "managed"
    url: str = Field(description="The LiveKit URL your viewer joins.")
    room_name: str
    client_token: str | None = Field(
        description=(
            "A LiveKit token for your viewer, valid for joining for a few minutes: in the"
            " create response only (`null` in every later read, as it is never stored)."
        )
    )
    worker_identity: str
    audio_source: AudioSource
    subscribe_to_identity: str | None
    synthetic_audio_if_no_input: bool


TransportView = Annotated[
    LiveKitTransportView | DailyTransportView | ManagedTransportView,
    Field(discriminator="type"),
]


class Failure(ResponseModel):
    code: str = Field(description="Closed set, e.g. `unschedulable`, `worker_lost`.")
    message: str


class SessionUsage(ResponseModel):
    billable_seconds: float
    frames: int


_SESSION_EXAMPLE: dict[str, Any] = {
    "id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
    "object": "session",
    "status": "queued",
    "avatar_id": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
    "quality": "lite",
    "aspect_ratio": "4:3",
    "video_encoding": "VP8",
    "voice": None,
    "transport": {
        "type": "livekit",
        "url": "wss://rtc.example.com",
        "room_name": "support-42",
        "worker_identity": "facecast-worker",
        "audio_source": "data_stream",
        "subscribe_to_identity": None,
        "synthetic_audio_if_no_input": False,
        "worker_token": REDACTED,
    },
    "idle_timeout_seconds": 30,
    "max_duration_seconds": 600,
    "metadata": {"ticket": "T-1234"},
    "created_at": "2026-11-21T08:00:00Z",
    "queued_at": "2026-11-21T08:00:00Z",
    "started_at": None,
    "first_frame_at": None,
    "end_requested_at": None,
    "keep_alive_at": None,
    "ended_at": None,
    "failed_at": None,
    "end_reason": None,
    "failure": None,
    "usage": {"billable_seconds": 0.0, "frames": 0},
    "expiration": None,
}


class Session(ResponseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_SESSION_EXAMPLE]})

    id: Annotated[str, Field(pattern=SESSION_ID_PATTERN)]
    object: Literal["session"] = "session"
    status: Phase = Field(
        description=(
            "created -> queued -> starting -> running -> ending -> ended; or failed, canceled."
            " `created` until the operator has seen the session: a create answers `queued` (or"
            " further) when the operator admits it within about a second, else `created`."
        )
    )
    avatar_id: str
    quality: Quality
    aspect_ratio: AspectRatio
    video_encoding: VideoEncoding
    voice: Voice | None
    transport: TransportView
    idle_timeout_seconds: int | None
    max_duration_seconds: int
    metadata: dict[str, Any]
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None = Field(description="When the worker was running.")
    first_frame_at: datetime | None
    end_requested_at: datetime | None
    keep_alive_at: datetime | None
    ended_at: datetime | None = Field(description="When it reached `ended` or `canceled`.")
    failed_at: datetime | None
    end_reason: str | None = Field(
        description="Why it ended or was canceled (`user_ended`, `idle_timeout`, ...)."
    )
    failure: Failure | None
    usage: SessionUsage
    expiration: datetime | None = Field(
        description="The latest time the session will stop (its max-duration deadline), once known."
    )


class SessionList(ResponseModel):
    object: Literal["list"] = "list"
    data: list[Session]
    has_more: bool
    next_cursor: Annotated[str, Field(pattern=SESSION_ID_PATTERN)] | None = Field(
        description="Pass as `cursor` to get the next page (the id of this page's last session)."
    )
