"""Every /v1 operation of the API, and the client method that calls it.

The clients build their requests from this table, and `tests/test_openapi_contract.py` checks
it against the server's OpenAPI document both ways (every operation has a method, methods,
paths, query parameters and models match), so the client cannot drift from the API.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from facecast.models import (
    ApiObject,
    Avatar,
    AvatarList,
    CreateAvatarRequest,
    CreateSessionRequest,
    InterruptResult,
    Session,
    SessionList,
    SpeakRequest,
    SpeakTask,
    Usage,
    ViewerToken,
    ViewerTokenRequest,
    VoiceList,
)

T = TypeVar("T", bound=ApiObject)


@dataclass(frozen=True)
class Operation(Generic[T]):
    method: str
    path: str
    client_method: str  # attribute path on Facecast and AsyncFacecast, e.g. "sessions.create"
    response: type[T]
    request: (
        type[CreateSessionRequest | CreateAvatarRequest | SpeakRequest | ViewerTokenRequest] | None
    ) = None
    query: tuple[str, ...] = ()
    # A POST that makes something: sent with an Idempotency-Key by default, so that a retry
    # (ours, or the caller's after a timeout) cannot make it twice.
    creates: bool = False


CREATE_SESSION = Operation(
    "POST", "/v1/sessions", "sessions.create", Session, CreateSessionRequest, creates=True
)
LIST_SESSIONS = Operation(
    "GET", "/v1/sessions", "sessions.list", SessionList, query=("status", "limit", "cursor")
)
GET_SESSION = Operation("GET", "/v1/sessions/{session_id}", "sessions.get", Session)
END_SESSION = Operation("POST", "/v1/sessions/{session_id}/end", "sessions.end", Session)
KEEP_ALIVE = Operation(
    "POST", "/v1/sessions/{session_id}/keep-alive", "sessions.keep_alive", Session
)
VIEWER_TOKEN = Operation(
    "POST",
    "/v1/sessions/{session_id}/viewer-token",
    "sessions.viewer_token",
    ViewerToken,
    ViewerTokenRequest,
)
CANCEL_SESSION = Operation("DELETE", "/v1/sessions/{session_id}", "sessions.cancel", Session)
# Not `creates`: the API takes no Idempotency-Key for a speak (a retry says the text again).
SPEAK = Operation(
    "POST", "/v1/sessions/{session_id}/speak", "sessions.speak", SpeakTask, SpeakRequest
)
GET_SPEAK_TASK = Operation(
    "GET", "/v1/sessions/{session_id}/speak/{task_id}", "sessions.get_speak_task", SpeakTask
)
INTERRUPT = Operation(
    "POST", "/v1/sessions/{session_id}/interrupt", "sessions.interrupt", InterruptResult
)
CREATE_AVATAR = Operation(
    "POST", "/v1/avatars", "avatars.create", Avatar, CreateAvatarRequest, creates=True
)
LIST_AVATARS = Operation(
    "GET", "/v1/avatars", "avatars.list", AvatarList, query=("limit", "cursor")
)
GET_AVATAR = Operation("GET", "/v1/avatars/{avatar_id}", "avatars.get", Avatar)
DELETE_AVATAR = Operation("DELETE", "/v1/avatars/{avatar_id}", "avatars.delete", Avatar)
GET_USAGE = Operation("GET", "/v1/usage", "usage.get", Usage)
LIST_VOICES = Operation("GET", "/v1/voices", "voices.list", VoiceList)

OPERATIONS: tuple[Operation[Any], ...] = (
    CREATE_SESSION,
    LIST_SESSIONS,
    GET_SESSION,
    END_SESSION,
    KEEP_ALIVE,
    VIEWER_TOKEN,
    CANCEL_SESSION,
    SPEAK,
    GET_SPEAK_TASK,
    INTERRUPT,
    CREATE_AVATAR,
    LIST_AVATARS,
    GET_AVATAR,
    DELETE_AVATAR,
    GET_USAGE,
    LIST_VOICES,
)
