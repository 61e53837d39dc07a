"""Managed rooms, the pure part: a session with `transport: {"type": "managed"}` runs in a
LiveKit room that Facecast creates on the platform's own LiveKit server, instead of the
customer's. What a room is called, how its session is marked, what each token may do and which
rooms are left over. No I/O: `sessions/managed.py` talks to the LiveKit server.

The resource stays an ordinary LiveKit session (its transport names the platform's server and
the room; the worker's token is in its Secret as always), so the operator and the worker need
nothing new; a label says the room is Facecast's, and an annotation keeps the URL clients join.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Protocol

from avatar_crds.meta import GROUP

# Rooms Facecast made: the prefix and the session's resource name, so that a room names its
# session and the sweep can tell ours from the customer rooms on the same server.
ROOM_PREFIX = "facecast-"
LABEL_MANAGED_ROOM = f"{GROUP}/managed-room"
ANNOTATION_CLIENT_URL = f"{GROUP}/client-url"
# What the creator asked for its viewers, so that a later viewer token gets the same rights.
ANNOTATION_CLIENT_IDENTITY = f"{GROUP}/client-identity"
ANNOTATION_CLIENT_CAN_PUBLISH = f"{GROUP}/client-can-publish"
WORKER_IDENTITY = "facecast-worker"
CLIENT_IDENTITY = "facecast-client"
# LiveKit closes a room nobody joined, or everybody left, after this long: a safety net for a
# room whose delete failed; the sweep is what deletes it.
EMPTY_TIMEOUT_SECONDS = 300
DEPARTURE_TIMEOUT_SECONDS = 60


@dataclass(frozen=True)
class ManagedLiveKit:
    """The platform's LiveKit server, as configured (settings.py)."""

    url: str  # what the workers join and the API calls (ws:// or wss://)
    client_url: str  # what the create response hands to clients
    api_key: str
    api_secret: str = field(repr=False)
    client_token_ttl_seconds: int = 600

    @property
    def http_url(self) -> str:
        """The server API's URL (RoomService), the same host over HTTP."""
        for ws, http in (("wss://", "https://"), ("ws://", "http://")):
            if self.url.startswith(ws):
                return http + self.url[len(ws) :]
        return self.url


@dataclass(frozen=True)
class Grant:
    """What one token lets its holder do in one room (turned into a LiveKit token by the
    adapter)."""

    room: str
    identity: str
    can_publish: bool
    can_subscribe: bool
    can_publish_data: bool
    ttl_seconds: int | None = None  # None: LiveKit's default (6 hours)
    agent: bool = False


def room_name(session_name: str) -> str:
    return f"{ROOM_PREFIX}{session_name}"


def session_of_room(room: str) -> str | None:
    """The session a managed room belongs to; None for a room that is not Facecast's."""
    if not room.startswith(ROOM_PREFIX) or len(room) == len(ROOM_PREFIX):
        return None
    return room[len(ROOM_PREFIX) :]


def worker_grant(room: str, identity: str) -> Grant:
    """The worker: this room only, publishing its video and reading the agent's data; valid
    as long as LiveKit's default, since the worker may (re)join late in a long session."""
    return Grant(
        room=room,
        identity=identity,
        can_publish=True,
        can_subscribe=True,
        can_publish_data=True,
        agent=True,
    )


def client_grant(room: str, identity: str, *, can_publish: bool, ttl_seconds: int) -> Grant:
    """The customer's viewer: subscribe-only unless asked (a viewer that publishes could
    impersonate the avatar's audio source); short-lived, because it is handed to browsers and
    LiveKit checks it only when joining."""
    return Grant(
        room=room,
        identity=identity,
        can_publish=can_publish,
        can_subscribe=True,
        can_publish_data=can_publish,
        ttl_seconds=ttl_seconds,
    )


def is_managed(labels: Mapping[str, str] | None) -> bool:
    return (labels or {}).get(LABEL_MANAGED_ROOM) == "true"


@dataclass(frozen=True)
class Viewer:
    """Who a managed session's viewer tokens are for, and whether they may publish."""

    identity: str = CLIENT_IDENTITY
    can_publish: bool = False


def session_marks(client_url: str, viewer: Viewer) -> tuple[dict[str, str], dict[str, str]]:
    """The labels and annotations of a managed session."""
    return {LABEL_MANAGED_ROOM: "true"}, {
        ANNOTATION_CLIENT_URL: client_url,
        ANNOTATION_CLIENT_IDENTITY: viewer.identity,
        ANNOTATION_CLIENT_CAN_PUBLISH: "true" if viewer.can_publish else "false",
    }


def viewer_of(annotations: Mapping[str, str] | None) -> Viewer:
    """The viewer a managed session was created for; a session without the marks (made before
    they existed) gets the defaults: subscribe-only."""
    marks = annotations or {}
    return Viewer(
        identity=marks.get(ANNOTATION_CLIENT_IDENTITY) or CLIENT_IDENTITY,
        can_publish=marks.get(ANNOTATION_CLIENT_CAN_PUBLISH) == "true",
    )


@dataclass(frozen=True)
class RoomSeen:
    name: str
    created_at: float  # Unix seconds, as LiveKit reports it


def rooms_to_delete(
    rooms: Iterable[RoomSeen],
    sessions: Mapping[str, bool],
    *,
    now: float,
    grace_seconds: float,
) -> list[str]:
    """Facecast's rooms to delete, given the managed sessions that exist (name -> whether it
    has finished): a finished session's room at once, a room with no session once it is older
    than the grace period (its session may still be being created: the room is made first)."""
    doomed = []
    for room in rooms:
        session = session_of_room(room.name)
        if session is None:
            continue  # not Facecast's
        finished = sessions.get(session)
        if finished or (finished is None and now - room.created_at >= grace_seconds):
            doomed.append(room.name)
    return sorted(doomed)


class ManagedRooms(Protocol):
    """The LiveKit server side of managed rooms (`sessions/managed.py`)."""

    @property
    def config(self) -> ManagedLiveKit: ...

    async def create_room(self, room: str) -> None: ...

    async def delete_room(self, room: str) -> None: ...

    def token(self, grant: Grant) -> str: ...
