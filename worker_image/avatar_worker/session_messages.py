"""Messages from the session to everyone in the room, on data topic `facecast.session`.

Today one: the operator's `status.endingSoon` (a cutoff is near), relayed as
`{"type": "ending_soon", "reason": ..., "at": <ISO-8601>}`, reliably, once per (reason, at).
A message decided on while the worker is out of the room (before the join, during a rejoin) is
sent once it is back in.
"""

from __future__ import annotations

import asyncio
import contextlib
import json

from livekit import rtc

from avatar_crds.session import EndingSoon
from avatar_worker.logging import get_logger

log = get_logger("avatar_worker.session_messages")

SESSION_TOPIC = "facecast.session"
ENDING_SOON = "ending_soon"
SEND_ATTEMPTS = 3
RETRY_DELAY_S = 0.2


def ending_soon_message(ending: EndingSoon) -> bytes:
    body = {"type": ENDING_SOON, **ending.to_k8s()}
    return json.dumps(body, separators=(",", ":")).encode()


class EndingSoonRelay:
    """Which warnings are new (pure): each (reason, at) is relayed once."""

    def __init__(self) -> None:
        self._relayed: set[tuple[str, str]] = set()

    def new_message(self, ending: EndingSoon | None) -> bytes | None:
        if ending is None:
            return None
        key = (ending.reason.value, ending.at.isoformat())
        if key in self._relayed:
            return None
        self._relayed.add(key)
        return ending_soon_message(ending)


class SessionMessages:
    """A RoomAttachment that publishes session messages in order, reliably."""

    def __init__(self) -> None:
        self._relay = EndingSoonRelay()
        self._outbox: asyncio.Queue[bytes] = asyncio.Queue()
        self._room: rtc.Room | None = None
        self._in_room = asyncio.Event()
        self._sender: asyncio.Task[None] | None = None
        self.sent = 0

    def ending_soon(self, ending: EndingSoon | None) -> None:
        payload = self._relay.new_message(ending)
        if payload is None:
            return
        assert ending is not None
        log.info("relaying ending_soon", reason=ending.reason.value, at=ending.at.isoformat())
        self._outbox.put_nowait(payload)
        if self._sender is None:
            self._sender = asyncio.get_running_loop().create_task(self._send_all())

    async def attach(self, room: rtc.Room) -> None:
        self._room = room
        self._in_room.set()

    async def detach(self, room: rtc.Room) -> None:
        if self._room is room:
            self._room = None
            self._in_room.clear()

    async def aclose(self) -> None:
        if self._sender is not None:
            self._sender.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender

    async def _send_all(self) -> None:
        while True:
            payload = await self._outbox.get()
            for attempt in range(1, SEND_ATTEMPTS + 1):
                await self._in_room.wait()  # out of the room: sent once back in
                room = self._room
                if room is None:
                    continue
                try:
                    await room.local_participant.publish_data(
                        payload, reliable=True, topic=SESSION_TOPIC
                    )
                    self.sent += 1
                    break
                except Exception as error:
                    log.warning("session message not sent", error=str(error), attempt=attempt)
                    await asyncio.sleep(RETRY_DELAY_S)
