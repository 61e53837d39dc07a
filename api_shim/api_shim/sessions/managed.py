"""Managed rooms on the platform's LiveKit server (the pure rules are in `managed_rooms`):
creating a session's room, minting its tokens, and the sweep that deletes the rooms of
sessions that have finished.

Why the API sweeps instead of deleting when it sees an end: a session also ends without any
request (idle timeout, max duration, a failed worker, a cancel), possibly while no API replica
is running. The sweep compares the server's rooms with the sessions every few seconds, so it
cannot miss a room: whatever ended it, whenever, the next sweep of any replica deletes it.
Deletes are idempotent, so replicas sweeping at once do no harm. The operator and the worker
need no LiveKit credentials for it.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable
from datetime import timedelta

import structlog
from livekit import api as livekit_api

from api_shim.managed_rooms import (
    DEPARTURE_TIMEOUT_SECONDS,
    EMPTY_TIMEOUT_SECONDS,
    LABEL_MANAGED_ROOM,
    ROOM_PREFIX,
    Grant,
    ManagedLiveKit,
    RoomSeen,
    rooms_to_delete,
)
from avatar_crds import contract, phases
from avatar_crds.session import AvatarSession

log = structlog.get_logger("api_shim.managed_rooms")

MANAGED_SESSIONS = f"{contract.MANAGED_SELECTOR},{LABEL_MANAGED_ROOM}=true"
ROOM_NOT_FOUND = "not_found"


class LiveKitRooms:
    """RoomService calls and token minting for the configured server. The API secret signs
    tokens and requests; it is never logged (ManagedLiveKit hides it from repr)."""

    def __init__(self, config: ManagedLiveKit) -> None:
        self._config = config

    @property
    def config(self) -> ManagedLiveKit:
        return self._config

    def _api(self) -> livekit_api.LiveKitAPI:
        # One client per call: calls are rare (a create, a sweep), and an aiohttp session
        # must be made on the loop that uses it.
        return livekit_api.LiveKitAPI(
            self._config.http_url, self._config.api_key, self._config.api_secret
        )

    async def create_room(self, room: str) -> None:
        async with self._api() as lk:
            await lk.room.create_room(
                livekit_api.CreateRoomRequest(
                    name=room,
                    empty_timeout=EMPTY_TIMEOUT_SECONDS,
                    departure_timeout=DEPARTURE_TIMEOUT_SECONDS,
                )
            )

    async def delete_room(self, room: str) -> None:
        async with self._api() as lk:
            try:
                await lk.room.delete_room(livekit_api.DeleteRoomRequest(room=room))
            except livekit_api.TwirpError as error:
                if error.code != ROOM_NOT_FOUND:
                    raise

    async def list_rooms(self) -> list[RoomSeen]:
        async with self._api() as lk:
            listed = await lk.room.list_rooms(livekit_api.ListRoomsRequest())
        return [
            RoomSeen(name=room.name, created_at=float(room.creation_time))
            for room in listed.rooms
            if room.name.startswith(ROOM_PREFIX)
        ]

    def token(self, grant: Grant) -> str:
        token = (
            livekit_api.AccessToken(self._config.api_key, self._config.api_secret)
            .with_identity(grant.identity)
            .with_grants(
                livekit_api.VideoGrants(
                    room_join=True,
                    room=grant.room,
                    can_publish=grant.can_publish,
                    can_subscribe=grant.can_subscribe,
                    can_publish_data=grant.can_publish_data,
                )
            )
        )
        if grant.agent:
            token = token.with_kind("agent")
        if grant.ttl_seconds is not None:
            token = token.with_ttl(timedelta(seconds=grant.ttl_seconds))
        return token.to_jwt()


class RoomSweeper:
    """Deletes the rooms of finished (or vanished) managed sessions, every `interval`."""

    def __init__(
        self,
        rooms: LiveKitRooms,
        list_sessions: Callable[[str], Awaitable[list[AvatarSession]]],
        *,
        interval_seconds: float,
        grace_seconds: float,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self._rooms = rooms
        self._list_sessions = list_sessions
        self._interval = interval_seconds
        self._grace = grace_seconds
        self._clock = clock
        self._task: asyncio.Task[None] | None = None

    async def sweep_once(self) -> list[str]:
        rooms = await self._rooms.list_rooms()
        if not rooms:
            return []  # nothing to compare: no LIST of the sessions
        sessions = {
            session.metadata.name or "": phases.is_terminal(session)
            for session in await self._list_sessions(MANAGED_SESSIONS)
        }
        doomed = rooms_to_delete(rooms, sessions, now=self._clock(), grace_seconds=self._grace)
        for room in doomed:
            await self._rooms.delete_room(room)
            log.info("managed_room_deleted", room=room)
        return doomed

    async def _run(self) -> None:
        while True:
            try:
                await self.sweep_once()
            except Exception as error:
                # LiveKit or the API server unreachable: the next sweep tries again.
                log.warning("managed_room_sweep_failed", error=type(error).__name__)
            await asyncio.sleep(self._interval)

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.create_task(self._run(), name="managed-room-sweep")

    async def aclose(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
