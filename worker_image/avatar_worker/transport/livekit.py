"""Joining the customer's LiveKit room, and staying in it.

The SDK resumes or fully reconnects on its own after short network trouble (`reconnecting` /
`reconnected`). When it gives up and the room disconnects for a reason that is not final, the
transport joins again with a fresh `rtc.Room` until a deadline, re-attaching everything that
lives on the room (RPC methods, stream handlers, published tracks). A final reason (the
participant was removed, the room deleted, another worker took the identity) ends the session.
"""

from __future__ import annotations

import asyncio
import base64
import json
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from livekit import rtc

from avatar_crds.addresses import AddressAllowList
from avatar_crds.enums import FailureReason
from avatar_worker.errors import WorkerError
from avatar_worker.logging import get_logger, redact
from avatar_worker.transport.destination import (
    DestinationUnresolvedError,
    Resolver,
    check_destination,
    system_resolver,
)

log = get_logger("avatar_worker.transport")

# Reasons after which joining again would be wrong: somebody ended this participant on purpose.
FINAL_DISCONNECT_REASONS = frozenset(
    {
        rtc.DisconnectReason.CLIENT_INITIATED,
        rtc.DisconnectReason.DUPLICATE_IDENTITY,
        rtc.DisconnectReason.PARTICIPANT_REMOVED,
        rtc.DisconnectReason.ROOM_DELETED,
        rtc.DisconnectReason.ROOM_CLOSED,
    }
)
_AUTH_ERROR = re.compile(
    r"\b(401|403)\b|unauthori[sz]ed|forbidden|invalid (authorization )?token|"
    r"token is expired|permission denied",
    re.IGNORECASE,
)


def classify_connect_error(message: str) -> FailureReason:
    """A failed join is the token's fault (rejected by the server) or the room's (not reached)."""
    if _AUTH_ERROR.search(message):
        return FailureReason.TRANSPORT_AUTH_FAILED
    return FailureReason.ROOM_UNREACHABLE


def should_rejoin(reason: int) -> bool:
    return reason not in FINAL_DISCONNECT_REASONS


def disconnect_reason_name(reason: int) -> str:
    try:
        return str(rtc.DisconnectReason.Name(reason))  # type: ignore[arg-type]
    except ValueError:
        return str(reason)


def token_claims(token: str) -> dict[str, Any]:
    """The JWT's payload, unverified (the server verifies it): to check identity and room."""
    try:
        payload = token.split(".")[1]
        padded = payload + "=" * (-len(payload) % 4)
        claims = json.loads(base64.urlsafe_b64decode(padded))
    except (IndexError, ValueError):
        return {}
    return claims if isinstance(claims, dict) else {}


def read_token(path: str) -> str:
    """The room token in a file (the per-session pod's mounted Secret)."""
    try:
        with open(path, encoding="utf-8") as handle:
            text = handle.read()
    except OSError as exc:
        raise WorkerError(
            FailureReason.TRANSPORT_AUTH_FAILED,
            f"cannot read the room token at {path}: {exc.strerror or type(exc).__name__}",
        ) from exc
    return checked_token(text, f"at {path}")


def checked_token(text: str, where: str) -> str:
    """The token in `text` (as read from `where`, for the message); WorkerError if empty."""
    token = text.strip()
    if not token:
        raise WorkerError(FailureReason.TRANSPORT_AUTH_FAILED, f"the room token {where} is empty")
    return token


class RoomAttachment(Protocol):
    """Something that lives on the room and must be set up again after a rejoin."""

    async def attach(self, room: rtc.Room) -> None: ...

    async def detach(self, room: rtc.Room) -> None: ...


@dataclass(frozen=True)
class RoomClosed:
    """Why the worker is no longer in the room."""

    reason: str


class LiveKitTransport:
    def __init__(
        self,
        *,
        url: str,
        token: str,
        identity: str,
        attachments: Sequence[RoomAttachment] = (),
        connect_timeout_s: float = 10.0,
        join_deadline_s: float = 30.0,
        rejoin_deadline_s: float = 60.0,
        allow: AddressAllowList | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self._url = url
        self._allow = allow if allow is not None else AddressAllowList()
        self._resolver = resolver
        self._token = token
        self._identity = identity
        self._attachments = list(attachments)
        self._connect_timeout = connect_timeout_s
        self._join_deadline = join_deadline_s
        self._rejoin_deadline = rejoin_deadline_s
        self._room: rtc.Room | None = None
        self._closed: asyncio.Future[RoomClosed] | None = None
        self._leaving = False
        self._attached = False  # the attachments live on the room (and on every room joined)
        self._rejoin_task: asyncio.Task[None] | None = None
        self.rejoins = 0
        claims = token_claims(token)
        subject = claims.get("sub")
        if subject and subject != identity:
            log.warning(
                "token identity differs from the configured worker identity",
                token_identity=subject,
                configured_identity=identity,
            )

    @property
    def room(self) -> rtc.Room:
        if self._room is None:
            raise RuntimeError("not connected")
        return self._room

    @property
    def connected(self) -> bool:
        return self._room is not None and self._room.isconnected()

    async def connect(self, *, attach: bool = True) -> rtc.Room:
        """Join, retrying an unreachable server until the join deadline; WorkerError if not.
        Everything that lives on the room is attached on joining, or (`attach=False`) once
        `attach` is called: a worker joins while its renderer is still being prepared and
        publishes once its frames flow. Left (`leave`) while it joins, it leaves the room it
        was joining as soon as it is in it."""
        self._closed = asyncio.get_running_loop().create_future()
        self._attached = attach
        return await self._join(self._join_deadline)

    async def attach(self) -> None:
        """Attach everything to the room joined with `attach=False`, and to each room joined
        again after it (if a rejoin is under way, it attaches them once it is in)."""
        if self._attached:
            return
        self._attached = True
        if self._room is not None:
            for attachment in self._attachments:
                await attachment.attach(self._room)

    async def _join(self, deadline_s: float) -> rtc.Room:
        deadline = time.monotonic() + deadline_s
        delay = 0.5
        attempt = 0
        while True:
            attempt += 1
            try:
                # Before every join, rejoins too: where the name points may have changed.
                await check_destination(self._url, self._allow, self._resolver)
                room = rtc.Room()
                await room.connect(
                    self._url,
                    self._token,
                    rtc.RoomOptions(auto_subscribe=False, connect_timeout=self._connect_timeout),
                )
            except (rtc.ConnectError, DestinationUnresolvedError) as exc:
                message = redact(exc.message if isinstance(exc, rtc.ConnectError) else str(exc))
                reason = classify_connect_error(message)
                log.warning("join failed", attempt=attempt, reason=reason.value, error=message)
                if reason is FailureReason.TRANSPORT_AUTH_FAILED:
                    raise WorkerError(
                        reason, f"the room rejected the worker token: {message}"
                    ) from None
                if self._leaving or time.monotonic() + delay >= deadline:
                    raise WorkerError(
                        reason, f"cannot reach the room at {self._url}: {message}"
                    ) from None
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
                continue
            if self._leaving:
                await room.disconnect()
                log.info("left the room as soon as it was joined")
                return room
            self._room = room
            room.on("disconnected", self._on_disconnected)
            room.on("reconnecting", lambda: log.warning("connection lost; the SDK is reconnecting"))
            room.on("reconnected", lambda: log.info("reconnected"))
            log.info(
                "joined the room",
                room=room.name,
                identity=room.local_participant.identity,
                attempt=attempt,
            )
            if self._attached:
                for attachment in self._attachments:
                    await attachment.attach(room)
            return room

    def _on_disconnected(self, reason: int) -> None:
        if self._leaving or self._closed is None or self._closed.done():
            return
        name = disconnect_reason_name(reason)
        if not should_rejoin(reason):
            log.info("removed from the room", reason=name)
            self._closed.set_result(RoomClosed(reason=name))
            return
        log.warning("disconnected; joining again", reason=name)
        if self._rejoin_task is None or self._rejoin_task.done():
            self._rejoin_task = asyncio.get_running_loop().create_task(self._rejoin(name))

    async def _rejoin(self, why: str) -> None:
        old = self._room
        self._room = None
        if old is not None and self._attached:
            for attachment in self._attachments:
                await attachment.detach(old)
        try:
            await self._join(self._rejoin_deadline)
        except WorkerError as failure:
            if self._closed is not None and not self._closed.done():
                self._closed.set_exception(failure)
            return
        self.rejoins += 1
        log.info("joined again after a disconnect", previous_reason=why, rejoins=self.rejoins)

    async def wait_closed(self) -> RoomClosed:
        """Until the room is over for this worker (raises WorkerError if rejoining failed)."""
        if self._closed is None:
            raise RuntimeError("not connected")
        return await asyncio.shield(self._closed)

    async def leave(self) -> None:
        self._leaving = True
        if self._rejoin_task is not None and not self._rejoin_task.done():
            self._rejoin_task.cancel()
        room = self._room
        if room is None:
            return
        for attachment in reversed(self._attachments if self._attached else []):
            try:
                await attachment.detach(room)
            except Exception as exc:
                log.warning("detach failed", error=redact(str(exc)))
        if room.isconnected():
            await room.disconnect()
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(RoomClosed(reason="left"))
        log.info("left the room")
