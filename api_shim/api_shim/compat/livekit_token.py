"""What a LiveKit access token says about the room it joins, read without verifying it.

Services that take only a LiveKit URL and token (no room name) rely on the token naming its
room: a LiveKit token is a JWT whose `video.room` claim is the room and whose `sub` is the
participant's identity. Facecast cannot verify it (the customer's API secret signs it) and
need not: the LiveKit server does when the worker joins. Pure; the token is never quoted.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass


class TokenClaimsError(ValueError):
    """The token is not a JWT that names a LiveKit room."""


@dataclass(frozen=True)
class RoomGrant:
    room: str
    identity: str | None


def room_grant(token: str) -> RoomGrant:
    parts = token.split(".")
    if len(parts) != 3:
        raise TokenClaimsError("is not a LiveKit access token (a JWT)")
    try:
        padded = parts[1] + "=" * (-len(parts[1]) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded.encode("ascii")))
    except (ValueError, UnicodeError, binascii.Error):
        raise TokenClaimsError("is not a LiveKit access token (a JWT)") from None
    video = claims.get("video") if isinstance(claims, dict) else None
    room = video.get("room") if isinstance(video, dict) else None
    if not isinstance(room, str) or not room:
        raise TokenClaimsError("names no room (its `video.room` claim)")
    identity = claims.get("sub")
    return RoomGrant(
        room=room, identity=identity if isinstance(identity, str) and identity else None
    )
