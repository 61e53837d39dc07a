"""Python client for the Facecast API.

client = facecast.Facecast(api_key="fc_...", base_url="https://api.example.com")
session = client.sessions.create(facecast.CreateSessionRequest(...))
client.sessions.end(session.id)
"""

from facecast._async import AsyncFacecast
from facecast._sync import Facecast
from facecast.errors import (
    AuthenticationError,
    ConflictError,
    FacecastConnectionError,
    FacecastError,
    InternalServerError,
    InvalidRequestError,
    NotFoundError,
    PermissionDeniedError,
    QuotaExceededError,
    RateLimitError,
    ServiceUnavailableError,
    UnprocessableError,
)
from facecast.models import (
    Avatar,
    AvatarList,
    CreateAvatarRequest,
    CreateSessionRequest,
    DailyTransport,
    InlineAvatar,
    InterruptResult,
    LiveKitTransport,
    ManagedTransport,
    Session,
    SessionList,
    SpeakRequest,
    SpeakTask,
    Usage,
    ViewerToken,
    Voice,
    VoiceList,
    VoiceView,
)
from facecast.retries import NO_RETRIES, RetryPolicy
from facecast.webhooks import WebhookEvent, WebhookSignatureError, construct_event, verify_signature

__all__ = [
    "NO_RETRIES",
    "AsyncFacecast",
    "AuthenticationError",
    "Avatar",
    "AvatarList",
    "ConflictError",
    "CreateAvatarRequest",
    "CreateSessionRequest",
    "DailyTransport",
    "Facecast",
    "FacecastConnectionError",
    "FacecastError",
    "InlineAvatar",
    "InternalServerError",
    "InterruptResult",
    "InvalidRequestError",
    "LiveKitTransport",
    "ManagedTransport",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "RateLimitError",
    "RetryPolicy",
    "ServiceUnavailableError",
    "Session",
    "SessionList",
    "SpeakRequest",
    "SpeakTask",
    "UnprocessableError",
    "Usage",
    "ViewerToken",
    "Voice",
    "VoiceList",
    "VoiceView",
    "WebhookEvent",
    "WebhookSignatureError",
    "construct_event",
    "verify_signature",
]
