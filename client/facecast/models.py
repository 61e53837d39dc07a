"""What the API sends and receives, as pydantic models.

Responses ignore fields they do not know, so a newer server never breaks an older client;
`tests/test_openapi_contract.py` keeps these in step with the server's OpenAPI document.
Requests send only the fields you set (`exclude_unset`), so the server's defaults apply to the
rest and live in one place: the server.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, PrivateAttr, SecretStr, field_serializer

Quality = Literal["mock", "lite", "standard", "pro"]
AspectRatio = Literal["4:3", "3:4", "1:1"]
VideoEncoding = Literal["H264", "VP8"]
AudioSource = Literal["data_stream", "track"]
Visibility = Literal["public", "tenant"]
SessionStatus = Literal[
    "created", "queued", "starting", "running", "ending", "ended", "failed", "canceled"
]
SpeechState = Literal["queued", "speaking", "done", "interrupted", "failed"]

# --- requests ----------------------------------------------------------------------------------


class _Request(BaseModel):
    # A misspelt field fails here, before a request is sent.
    model_config = ConfigDict(extra="forbid")

    ALWAYS_SENT: ClassVar[frozenset[str]] = frozenset()

    def wire(self) -> dict[str, Any]:
        """The JSON body: what was set, and what is always sent."""
        return self.model_dump(mode="json", exclude_unset=True) | self.model_dump(
            mode="json", include=set(self.ALWAYS_SENT)
        )


class _Transport(_Request):
    # `type` is the union's tag: it has a default here, but the body always carries it.
    ALWAYS_SENT: ClassVar[frozenset[str]] = frozenset({"type"})

    # SecretStr: the token stays out of reprs and tracebacks; only the wire body carries it.
    worker_token: SecretStr

    @field_serializer("worker_token", when_used="json")
    def _reveal(self, token: SecretStr) -> str:
        return token.get_secret_value()


class LiveKitTransport(_Transport):
    """Your LiveKit room; the worker joins it with `worker_token`."""

    type: Literal["livekit"] = "livekit"
    url: str
    room_name: str
    worker_identity: str | None = None
    audio_source: AudioSource | None = None
    subscribe_to_identity: str | None = None
    synthetic_audio_if_no_input: bool | None = None


class DailyTransport(_Transport):
    """A Daily room (the API refuses it with 422 `transport_not_supported` for now)."""

    type: Literal["daily"] = "daily"
    url: str


class ManagedTransport(_Request):
    """A room Facecast creates on the platform's LiveKit server: the created session's
    `transport.url` and `transport.client_token` are for your viewer (the token only in the
    create response). The API refuses it with 400 `managed_rooms_not_configured` where the
    platform has no LiveKit server of its own."""

    ALWAYS_SENT: ClassVar[frozenset[str]] = frozenset({"type"})

    type: Literal["managed"] = "managed"
    audio_source: AudioSource | None = None
    subscribe_to_identity: str | None = None
    synthetic_audio_if_no_input: bool | None = None
    client_identity: str | None = None
    client_can_publish: bool | None = None


class Voice(BaseModel):
    id: str
    speed: float | None = None


class InlineAvatar(_Request):
    """The session's portrait itself, instead of an `avatar_id` (if your plan allows it)."""

    image_url: str | None = None
    image_base64: str | None = None


class CreateSessionRequest(_Request):
    """POST /v1/sessions. Give `avatar_id` or `avatar`. `idle_timeout_seconds=None` (set
    explicitly) disables the idle timeout; left unset, the server's default applies. `quality`
    left unset is the installation's default: `standard` where it serves it, else `lite`."""

    avatar_id: str | None = None
    avatar: InlineAvatar | None = None
    quality: Quality | None = None
    aspect_ratio: AspectRatio | None = None
    video_encoding: VideoEncoding | None = None
    voice: Voice | None = None
    idle_timeout_seconds: int | None = None
    max_duration_seconds: int | None = None
    transport: Annotated[
        LiveKitTransport | DailyTransport | ManagedTransport, Field(discriminator="type")
    ]
    metadata: dict[str, Any] | None = None

    def wire(self) -> dict[str, Any]:
        body = super().wire()
        body["transport"] = self.transport.wire()
        return body


class CreateAvatarRequest(_Request):
    """POST /v1/avatars as JSON: the portrait by URL or as base64 (a file goes as multipart)."""

    image_url: str | None = None
    image_base64: str | None = None
    visibility: Visibility | None = None
    display_name: str | None = None


class SpeakRequest(_Request):
    """POST /v1/sessions/{id}/speak: `text` (1 to 4096 characters), optionally in another
    `voice` than the session's, and with `interrupt` in place of what is said and queued."""

    text: str
    voice: Voice | None = None
    interrupt: bool | None = None


# The multipart form of POST /v1/avatars besides these options: the image, as part `file`.
AVATAR_FILE_FIELD = "file"


# --- responses ---------------------------------------------------------------------------------


class _Response(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)


class ApiObject(_Response):
    """A top-level response: also says which request produced it."""

    _request_id: str | None = PrivateAttr(default=None)
    _replayed: bool = PrivateAttr(default=False)

    @property
    def request_id(self) -> str | None:
        """The response's `X-Request-Id`: quote it to support."""
        return self._request_id

    @property
    def idempotent_replayed(self) -> bool:
        """True when the API answered a repeated Idempotency-Key with the original result."""
        return self._replayed


class LiveKitTransportView(_Response):
    type: Literal["livekit"] = "livekit"
    url: str
    room_name: str
    worker_identity: str
    audio_source: str
    subscribe_to_identity: str | None
    synthetic_audio_if_no_input: bool
    worker_token: str = "[redacted]"


class DailyTransportView(_Response):
    type: Literal["daily"] = "daily"
    url: str
    worker_token: str = "[redacted]"


class ManagedTransportView(_Response):
    type: Literal["managed"] = "managed"
    url: str
    room_name: str
    client_token: str | None
    worker_identity: str
    audio_source: str
    subscribe_to_identity: str | None
    synthetic_audio_if_no_input: bool


class Failure(_Response):
    code: str
    message: str


class SessionUsage(_Response):
    billable_seconds: float
    frames: int


class Session(ApiObject):
    id: str
    object: Literal["session"] = "session"
    status: SessionStatus
    avatar_id: str
    quality: str
    aspect_ratio: str
    video_encoding: str
    voice: Voice | None
    transport: Annotated[
        LiveKitTransportView | DailyTransportView | ManagedTransportView,
        Field(discriminator="type"),
    ]
    idle_timeout_seconds: int | None
    max_duration_seconds: int
    metadata: dict[str, Any]
    created_at: datetime
    queued_at: datetime | None
    started_at: datetime | None
    first_frame_at: datetime | None
    end_requested_at: datetime | None
    keep_alive_at: datetime | None
    ended_at: datetime | None
    failed_at: datetime | None
    end_reason: str | None
    failure: Failure | None
    usage: SessionUsage
    expiration: datetime | None


class SessionList(ApiObject):
    object: Literal["list"] = "list"
    data: list[Session]
    has_more: bool
    next_cursor: str | None


class SpeakTask(ApiObject):
    """What the avatar is asked to say, and how far it got: queued -> speaking -> done, or
    interrupted, or failed (`message` says why)."""

    id: str
    object: Literal["speak_task"] = "speak_task"
    session_id: str
    state: SpeechState
    text: str
    voice: Voice | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None
    message: str | None


class ViewerTokenRequest(_Request):
    """POST /v1/sessions/{id}/viewer-token: optionally another `identity` than the session's
    `client_identity`."""

    identity: str | None = None


class ViewerToken(ApiObject):
    """A fresh LiveKit token for a managed room's viewer: join `room_name` at `url` before
    `expires_at`; it may publish only if the session was created with `client_can_publish`."""

    object: Literal["viewer_token"] = "viewer_token"
    session_id: str
    url: str
    room_name: str
    identity: str
    token: str
    can_publish: bool
    expires_at: datetime


class InterruptResult(ApiObject):
    """What an interrupt cut: the tasks being said or queued (none when repeated)."""

    object: Literal["interrupt"] = "interrupt"
    session_id: str
    interrupted_task_ids: list[str]


class AvatarBox(_Response):
    x: float
    y: float
    width: float
    height: float


class AvatarPoint(_Response):
    x: float
    y: float


class AvatarFace(_Response):
    box: AvatarBox
    landmarks: list[AvatarPoint]
    score: float
    detector: str


class AvatarImage(_Response):
    width: int
    height: int
    content_type: str = "image/jpeg"
    sha256: str
    size_bytes: int


class Avatar(ApiObject):
    id: str
    object: Literal["avatar"] = "avatar"
    visibility: Visibility
    display_name: str | None
    owned: bool
    image: AvatarImage
    face: AvatarFace
    created_at: datetime | None


class AvatarList(ApiObject):
    object: Literal["list"] = "list"
    data: list[Avatar]
    has_more: bool
    next_cursor: str | None


class Concurrency(_Response):
    current: int
    max: int
    available: int


class Minutes(_Response):
    included: int
    used: float
    total_remaining: float


class Usage(ApiObject):
    object: Literal["usage"] = "usage"
    concurrency: Concurrency
    minutes: Minutes
    period_start: datetime | None


class SpeedRange(_Response):
    min: float
    max: float


class VoiceView(_Response):
    id: str
    object: Literal["voice"] = "voice"
    name: str
    engine: str  # not a Literal: a newer server may have more engines
    languages: list[str]
    speed: SpeedRange
    default: bool


class VoiceList(ApiObject):
    object: Literal["list"] = "list"
    data: list[VoiceView]
