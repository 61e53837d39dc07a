"""AvatarSession: one customer session, one worker pod. `spec` is written by the API shim only;
`status` by the operator, except `status.worker`, which only the worker writes."""

from __future__ import annotations

import json
from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from avatar_crds import contract
from avatar_crds.cel import Rule, cel_list, rules
from avatar_crds.enums import (
    REASONS_BY_PHASE,
    AspectRatio,
    AudioSource,
    CancelReason,
    EndReason,
    FailureReason,
    Phase,
    Quality,
    TransportType,
    VideoCodec,
    WebhookEvent,
)
from avatar_crds.ids import AVATAR_PREFIX, name_pattern
from avatar_crds.meta import API_VERSION, CamelModel, ObjectMeta, nullable
from avatar_crds.speech import (
    SPEAK_TASK_ID_PATTERN,
    SPEECH_TASKS_MAX,
    SpeakTask,
    SpeakTaskReport,
    Voice,
)

RESERVED_METADATA_PREFIX = "_avatar."
METADATA_MAX_BYTES = 8 * 1024
METADATA_MAX_KEYS = 64
DEFAULT_IDLE_TIMEOUT_SECONDS = 30
DEFAULT_MAX_DURATION_SECONDS = 600
MESSAGE_MAX_LENGTH = 1024
"""Characters in any status message; whoever writes one clips it to fit (the API server refuses
the whole status write otherwise)."""
DNS_LABEL = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?$"
DNS_SUBDOMAIN = r"^[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*$"

TransportUrl = Annotated[str, Field(max_length=2048, pattern=r"^wss?://[^\s/?#]+[^\s]*$")]
HttpsUrl = Annotated[str, Field(max_length=2048, pattern=r"^https://[^\s/?#]+[^\s]*$")]
Identity = Annotated[str, Field(min_length=1, max_length=128)]


class LiveKitTransport(CamelModel):
    """The customer's own LiveKit room. The worker token is never here: see `tokenSecretRef`."""

    url: TransportUrl
    room_name: Annotated[str, Field(min_length=1, max_length=256)]
    worker_identity: Identity = "facecast-worker"
    audio_source: AudioSource = AudioSource.DATA_STREAM
    subscribe_to_identity: Identity | None = None
    synthetic_audio_if_no_input: bool = False


class DailyTransport(CamelModel):
    url: HttpsUrl


_TRANSPORT_MATCHES_TYPE = Rule(
    "self.type == 'livekit' ? (has(self.livekit) && !has(self.daily))"
    " : (has(self.daily) && !has(self.livekit))",
    "exactly the transport named by type must be set",
)


class Transport(CamelModel):
    """Tagged union: `type` names the one sub-object that is set."""

    model_config = ConfigDict(json_schema_extra=rules(_TRANSPORT_MATCHES_TYPE))

    type: TransportType
    livekit: LiveKitTransport | None = None
    daily: DailyTransport | None = None

    @model_validator(mode="after")
    def _matches_type(self) -> Transport:
        chosen = {TransportType.LIVEKIT: self.livekit, TransportType.DAILY: self.daily}
        others = [value for kind, value in chosen.items() if kind != self.type]
        if chosen[self.type] is None or any(value is not None for value in others):
            raise ValueError(_TRANSPORT_MATCHES_TYPE.message)
        return self


_SIZE_BOTH_OR_NEITHER = Rule(
    "has(self.width) == has(self.height)", "width and height must be set together"
)


class VideoSettings(CamelModel):
    """Codec, and resolution/bitrate when not derived from quality and aspect ratio."""

    model_config = ConfigDict(json_schema_extra=rules(_SIZE_BOTH_OR_NEITHER))

    codec: VideoCodec = VideoCodec.VP8
    width: Annotated[int, Field(ge=128, le=1920, multiple_of=2)] | None = None
    height: Annotated[int, Field(ge=128, le=1920, multiple_of=2)] | None = None
    bitrate_kbps: Annotated[int, Field(ge=100, le=20000)] | None = None

    @model_validator(mode="after")
    def _size_together(self) -> VideoSettings:
        if (self.width is None) != (self.height is None):
            raise ValueError(_SIZE_BOTH_OR_NEITHER.message)
        return self


class SecretKeyRef(CamelModel):
    """Where the worker token lives: a Secret owned by the session, mounted into the pod."""

    name: Annotated[str, Field(min_length=1, max_length=253, pattern=DNS_SUBDOMAIN)]
    key: Annotated[str, Field(min_length=1, max_length=253, pattern=r"^[-._a-zA-Z0-9]+$")] = "token"


_NO_RESERVED_KEYS = Rule(
    f"self.all(k, !k.startsWith('{RESERVED_METADATA_PREFIX}'))",
    f"metadata keys starting with '{RESERVED_METADATA_PREFIX}' are reserved",
)


def validate_metadata(value: dict[str, Any]) -> dict[str, Any]:
    """The customer's opaque JSON object, echoed in webhooks: bounded and without reserved keys."""
    if len(value) > METADATA_MAX_KEYS:
        raise ValueError(f"metadata has {len(value)} keys; the limit is {METADATA_MAX_KEYS}")
    if any(key.startswith(RESERVED_METADATA_PREFIX) for key in value):
        raise ValueError(_NO_RESERVED_KEYS.message)
    size = len(json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode())
    if size > METADATA_MAX_BYTES:
        raise ValueError(f"metadata is {size} bytes as JSON; the limit is {METADATA_MAX_BYTES}")
    return value


Metadata = Annotated[dict[str, Any], AfterValidator(validate_metadata)]
"""The customer's metadata, as the API accepts it and the AvatarSession stores it."""


_SPEC_IDENTITY_FIXED = Rule(
    "self.avatarRef == oldSelf.avatarRef && self.quality == oldSelf.quality"
    " && self.transport == oldSelf.transport && self.tokenSecretRef == oldSelf.tokenSecretRef"
    " && self.tenant == oldSelf.tenant",
    "avatarRef, quality, transport, tokenSecretRef and tenant are immutable",
)
_END_REQUEST_STAYS = Rule(
    "!has(oldSelf.endRequestedAt) || (has(self.endRequestedAt)"
    " && self.endRequestedAt == oldSelf.endRequestedAt)",
    "endRequestedAt cannot be changed or removed once set",
)
_SPEECH_CLEARED_GROWS = Rule(
    "!has(oldSelf.speechClearedThrough) || (has(self.speechClearedThrough)"
    " && self.speechClearedThrough >= oldSelf.speechClearedThrough)",
    "speechClearedThrough cannot go back",
)
_MAP_BY_ID: JsonDict = {"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["id"]}


class AvatarSessionSpec(CamelModel):
    """What the customer asked for. Written once by the API shim, then only to end, keep alive,
    speak or interrupt (`avatar_crds.speech`)."""

    model_config = ConfigDict(
        json_schema_extra=rules(_SPEC_IDENTITY_FIXED, _END_REQUEST_STAYS, _SPEECH_CLEARED_GROWS)
    )

    tenant: Annotated[str, Field(min_length=1, max_length=63, pattern=DNS_LABEL)]
    avatar_ref: Annotated[str, Field(max_length=64, pattern=name_pattern(AVATAR_PREFIX))]
    quality: Quality
    aspect_ratio: AspectRatio = AspectRatio.LANDSCAPE
    video: VideoSettings = Field(default_factory=VideoSettings)
    voice: Voice | None = None
    idle_timeout_seconds: Annotated[int, Field(ge=1, le=600)] | None = Field(
        default=DEFAULT_IDLE_TIMEOUT_SECONDS,
        description="Seconds without received audio before the session ends; null disables it.",
        json_schema_extra=nullable(),
    )
    max_duration_seconds: Annotated[int, Field(ge=1, le=3600)] = DEFAULT_MAX_DURATION_SECONDS
    transport: Transport
    token_secret_ref: SecretKeyRef
    metadata: Metadata = Field(
        default_factory=dict,
        description=f"Customer JSON object echoed in webhooks, at most {METADATA_MAX_BYTES} bytes.",
        # The reserved-key and byte-size rules are checked here, not by CEL: the API server
        # cannot type a free-form JSON object for CEL, so no rule can iterate its keys.
        json_schema_extra={"maxProperties": METADATA_MAX_KEYS},
    )
    end_requested_at: datetime | None = Field(
        default=None, description="Set once when the customer asks to end the session."
    )
    keep_alive_at: datetime | None = Field(
        default=None, description="Last keep-alive from the customer; restarts the idle timer."
    )
    speech: list[SpeakTask] = Field(
        default_factory=list,
        max_length=SPEECH_TASKS_MAX,
        description="Texts to say (POST /v1/sessions/{id}/speak), spoken in seq order.",
        json_schema_extra=_MAP_BY_ID,
    )
    speech_cleared_through: Annotated[int, Field(ge=0)] = Field(
        default=0,
        description="An interrupt: tasks with seq up to this one are cut or never start.",
    )


CONDITION_REASON = r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$"
"""What metav1.Condition accepts as a reason."""


class Condition(CamelModel):
    """A standard Kubernetes condition (`metav1.Condition`); the operator sets `Admitted` and
    `Ready` (avatar_operator.conditions)."""

    type: Annotated[str, Field(min_length=1, max_length=64)]
    status: Literal["True", "False", "Unknown"]
    reason: Annotated[str, Field(min_length=1, max_length=64, pattern=CONDITION_REASON)] | None = (
        Field(default=None, description="CamelCase, as in metav1.Condition.")
    )
    message: Annotated[str, Field(max_length=MESSAGE_MAX_LENGTH)] | None = None
    last_transition_time: datetime | None = None
    observed_generation: Annotated[int, Field(ge=0)] | None = None


class WorkerFailure(CamelModel):
    """Why the worker gave up (bad token, unreachable room, unreadable avatar); the operator
    turns it into a failed phase with the same reason."""

    reason: FailureReason
    message: Annotated[str, Field(max_length=MESSAGE_MAX_LENGTH)] = ""


class WorkerStatus(CamelModel):
    """What the worker reports about itself; nobody else writes these fields."""

    heartbeat_at: datetime | None = None
    first_frame_at: datetime | None = None
    last_audio_at: datetime | None = None
    frames: Annotated[int, Field(ge=0)] = 0
    billable_seconds: Annotated[float, Field(ge=0)] = 0.0
    failure: WorkerFailure | None = None
    left_at: datetime | None = Field(
        default=None,
        description="A pool worker left the room and freed the session's slot (once ending).",
    )
    speech: list[SpeakTaskReport] = Field(
        default_factory=list,
        max_length=SPEECH_TASKS_MAX,
        description="How far each speak task got; queued tasks have no entry yet.",
        json_schema_extra=_MAP_BY_ID,
    )


MAX_SLOTS_PER_WORKER = 64


class Binding(CamelModel):
    """The pool worker and slot a session is bound to (`avatar_crds.pool`): written by the
    operator with `starting`, in the one conditional write that takes the slot."""

    pool: Annotated[str, Field(min_length=1, max_length=63)]
    pod: Annotated[str, Field(min_length=1, max_length=253)]
    slot: Annotated[int, Field(ge=0, lt=MAX_SLOTS_PER_WORKER)]


class Deadlines(CamelModel):
    """Absolute times, so an operator restart re-arms timers without resetting them."""

    start_by: datetime | None = None
    idle_at: datetime | None = None
    max_duration_at: datetime | None = None


class EndingSoon(CamelModel):
    """A cutoff the operator has warned of (`session.ending_soon`); the worker relays it into the
    room. Cleared when the cutoff moves away (a keep-alive or speech)."""

    reason: Literal[EndReason.IDLE_TIMEOUT, EndReason.MAX_DURATION_REACHED]
    at: datetime = Field(description="When the session will end unless something changes.")


class Usage(CamelModel):
    billable_seconds: Annotated[float, Field(ge=0)] = 0.0


# Written with the transition that caused it, in the same status write, and removed once the
# event is delivered (or given up on): an operator that restarts in between sends it again.
class PendingWebhook(CamelModel):
    """A webhook event decided on but not yet delivered. Keyed by (event, task): one pending
    event of each type, but for speak events one per speak task."""

    event: WebhookEvent
    task: Annotated[str, Field(max_length=64, pattern=rf"^$|{SPEAK_TASK_ID_PATTERN}")] = Field(
        default="", description="The speak task of a speak.* event; empty for the others."
    )
    phase: Phase = Field(description="The session's phase when it happened, as the event reports.")
    occurred_at: datetime
    speak: SpeakTaskReport | None = Field(
        default=None, description="The task as the worker reported it when the event happened."
    )
    ending_soon: EndingSoon | None = Field(
        default=None, description="The cutoff a session.ending_soon event warns of."
    )


PENDING_WEBHOOKS_MAX = len(WebhookEvent) + 2 * SPEECH_TASKS_MAX
"""One of each event type, and a speak.started and speak.finished for every reported task."""


class AnnouncedSpeech(CamelModel):
    """A speak task whose webhooks the operator has decided on: `speak.started` (unless it
    never started), then `speak.finished` once `finished`. Kept while the worker reports the
    task, so a report seen again (a restart, a resync) queues nothing twice."""

    id: Annotated[str, Field(pattern=SPEAK_TASK_ID_PATTERN)]
    finished: bool = False


_TERMINAL_HAS_REASON = [
    Rule(
        f"!has(self.phase) || self.phase != '{phase}'"
        f" || (has(self.reason) && self.reason in {cel_list(allowed)})",
        f"a {phase} session needs a reason from: {', '.join(sorted(allowed))}",
    )
    for phase, allowed in REASONS_BY_PHASE.items()
]

SessionReason = EndReason | FailureReason | CancelReason


class AvatarSessionStatus(CamelModel):
    """Written by the operator (phase, reason, timestamps, deadlines) and the worker (`worker`)."""

    model_config = ConfigDict(json_schema_extra=rules(*_TERMINAL_HAS_REASON))

    phase: Phase | None = None
    reason: SessionReason | None = None
    message: Annotated[str, Field(max_length=MESSAGE_MAX_LENGTH)] | None = None
    observed_generation: Annotated[int, Field(ge=0)] | None = Field(
        default=None, description="The metadata.generation of the spec the operator last acted on."
    )
    queued_at: datetime | None = None
    starting_at: datetime | None = None
    running_at: datetime | None = None
    ending_at: datetime | None = None
    finished_at: datetime | None = Field(
        default=None, description="When a terminal phase was reached; starts the TTL."
    )
    deadlines: Deadlines | None = None
    ending_soon: EndingSoon | None = None
    pod_name: Annotated[str, Field(max_length=253)] | None = Field(
        default=None, description="The worker pod, named once the operator creates it."
    )
    binding: Binding | None = Field(
        default=None, description="The pool worker and slot serving the session, once bound."
    )
    usage: Usage | None = None
    worker: WorkerStatus | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        max_length=16,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )
    pending_webhooks: list[PendingWebhook] = Field(
        default_factory=list,
        max_length=PENDING_WEBHOOKS_MAX,
        json_schema_extra={
            "x-kubernetes-list-type": "map",
            "x-kubernetes-list-map-keys": ["event", "task"],
        },
    )
    announced_speech: list[AnnouncedSpeech] = Field(
        default_factory=list,
        max_length=SPEECH_TASKS_MAX,
        description="Speak tasks whose webhooks are decided on (avatar_operator.speech_events).",
        json_schema_extra=_MAP_BY_ID,
    )

    @model_validator(mode="after")
    def _terminal_has_reason(self) -> AvatarSessionStatus:
        if self.phase is not None and self.phase in REASONS_BY_PHASE:
            allowed = REASONS_BY_PHASE[self.phase]
            if self.reason is None or self.reason not in allowed:
                raise ValueError(
                    f"a {self.phase} session needs a reason from: {', '.join(sorted(allowed))}"
                )
        return self


# On the whole resource, the only level whose CEL may read metadata.name: the worker mounts
# the Secret the session names, so naming another one would hand that Secret to whatever
# transport URL the session gives.
OWN_TOKEN_SECRET = Rule(
    f"self.spec.tokenSecretRef.name == self.metadata.name + '{contract.TOKEN_SECRET_SUFFIX}'",
    "spec.tokenSecretRef.name must be the session's own token Secret,"
    f" <metadata.name>{contract.TOKEN_SECRET_SUFFIX}",
)


class AvatarSession(CamelModel):
    """The whole resource as the API server stores it."""

    model_config = ConfigDict(extra="ignore")

    api_version: Literal["facecast.io/v1alpha1"] = API_VERSION
    kind: Literal["AvatarSession"] = "AvatarSession"
    metadata: ObjectMeta = Field(default_factory=ObjectMeta)
    spec: AvatarSessionSpec
    status: AvatarSessionStatus = Field(default_factory=AvatarSessionStatus)

    @model_validator(mode="after")
    def _own_token_secret(self) -> AvatarSession:
        name = self.metadata.name
        if name and self.spec.token_secret_ref.name != contract.token_secret_name(name):
            raise ValueError(OWN_TOKEN_SECRET.message)
        return self
