"""`AvatarSession`: a Facecast avatar that speaks for a LiveKit agent in the agent's room.

`start` mints the Facecast worker's room token (it joins as `avatar_identity` and, through
`lk.publish_on_behalf`, speaks for the agent), asks the Facecast API for a session in the
agent's room, and sends the agent's speech to the worker over the LiveKit Agents avatar protocol
(`DataStreamAudioOutput`), which holds it back until the avatar's video is published. The agent
itself publishes no audio: the avatar plays it, lip-synced. When the job shuts down, the agent
session closes or the agent leaves the room, the Facecast session is ended (`user_ended`).
"""

from __future__ import annotations

import asyncio
import os
from typing import TYPE_CHECKING, Any, Literal

from livekit import api, rtc
from livekit.agents import NOT_GIVEN, NotGivenOr, get_job_context, utils
from livekit.agents.types import ATTRIBUTE_PUBLISH_ON_BEHALF
from livekit.agents.voice.avatar import AvatarSession as BaseAvatarSession
from livekit.agents.voice.avatar import DataStreamAudioOutput

from facecast import (
    AsyncFacecast,
    CreateSessionRequest,
    FacecastConnectionError,
    FacecastError,
    LiveKitTransport,
)
from facecast.models import Quality

from .errors import FacecastException
from .log import logger

if TYPE_CHECKING:
    from livekit.agents import AgentSession
    from livekit.agents.voice.events import CloseEvent

_AVATAR_AGENT_IDENTITY = "facecast-avatar-agent"
_AVATAR_AGENT_NAME = "facecast-avatar-agent"
DEFAULT_QUALITY: Quality = "lite"
# Ending is one short API call; a Facecast API that does not answer in this time must not hold
# the job's shutdown (the session then ends on its idle timeout instead).
END_TIMEOUT = 10.0


def worker_token(
    *,
    api_key: str,
    api_secret: str,
    room_name: str,
    identity: str,
    name: str,
    agent_identity: str,
) -> str:
    """The Facecast worker's room token: join this room only, as `identity`, speaking for
    `agent_identity` (the worker takes speech and interruptions from that participant alone)."""
    return (
        api.AccessToken(api_key=api_key, api_secret=api_secret)
        .with_kind("agent")
        .with_identity(identity)
        .with_name(name)
        .with_grants(api.VideoGrants(room_join=True, room=room_name))
        .with_attributes({ATTRIBUTE_PUBLISH_ON_BEHALF: agent_identity})
        .to_jwt()
    )


def _setting(value: NotGivenOr[str], variable: str) -> str | None:
    if utils.is_given(value):
        return value or None
    return os.environ.get(variable) or None


class AvatarSession(BaseAvatarSession[Literal["metrics_collected"]]):
    """A Facecast avatar session.

    Args:
        avatar_id: The avatar (`av_...`, from `POST /v1/avatars`); env `FACECAST_AVATAR_ID`.
        quality: The renderer tier (`mock`, `lite`, ...) your plan allows; `lite` by default.
        api_url: Your Facecast API's base URL; env `FACECAST_API_URL`.
        api_key: A Facecast API key (`fc_...`); env `FACECAST_API_KEY`.
        avatar_participant_identity: The worker's identity in the room.
        avatar_participant_name: The worker's display name in the room.
        idle_timeout_seconds, max_duration_seconds, metadata: passed to the session as is;
            unset, the server's defaults apply.
    """

    def __init__(
        self,
        *,
        avatar_id: NotGivenOr[str] = NOT_GIVEN,
        quality: Quality = DEFAULT_QUALITY,
        api_url: NotGivenOr[str] = NOT_GIVEN,
        api_key: NotGivenOr[str] = NOT_GIVEN,
        avatar_participant_identity: NotGivenOr[str] = NOT_GIVEN,
        avatar_participant_name: NotGivenOr[str] = NOT_GIVEN,
        idle_timeout_seconds: NotGivenOr[int | None] = NOT_GIVEN,
        max_duration_seconds: NotGivenOr[int] = NOT_GIVEN,
        metadata: NotGivenOr[dict[str, Any]] = NOT_GIVEN,
    ) -> None:
        super().__init__()
        resolved_avatar = _setting(avatar_id, "FACECAST_AVATAR_ID")
        resolved_url = _setting(api_url, "FACECAST_API_URL")
        resolved_key = _setting(api_key, "FACECAST_API_KEY")
        if not resolved_avatar:
            raise FacecastException(
                "avatar_id must be set by argument or the FACECAST_AVATAR_ID environment variable"
            )
        if not resolved_url or not resolved_key:
            raise FacecastException(
                "api_url and api_key must be set by arguments or the FACECAST_API_URL and "
                "FACECAST_API_KEY environment variables"
            )
        self._avatar_id = resolved_avatar
        self._quality: Quality = quality
        self._api_url = resolved_url
        self._api_key = resolved_key
        self._avatar_participant_identity = avatar_participant_identity or _AVATAR_AGENT_IDENTITY
        self._avatar_participant_name = avatar_participant_name or _AVATAR_AGENT_NAME
        # Only what the caller set goes in the request, so the server's defaults apply to the rest.
        self._options: dict[str, Any] = {
            key: value
            for key, value in {
                "idle_timeout_seconds": idle_timeout_seconds,
                "max_duration_seconds": max_duration_seconds,
                "metadata": metadata,
            }.items()
            if utils.is_given(value)
        }
        self._client: AsyncFacecast | None = None
        self._closing: asyncio.Task[None] | None = None
        self.session_id: str | None = None

    @property
    def avatar_identity(self) -> str:
        return self._avatar_participant_identity

    @property
    def provider(self) -> str:
        return "facecast"

    async def start(
        self,
        agent_session: AgentSession[Any],
        room: rtc.Room,
        *,
        livekit_url: NotGivenOr[str] = NOT_GIVEN,
        livekit_api_key: NotGivenOr[str] = NOT_GIVEN,
        livekit_api_secret: NotGivenOr[str] = NOT_GIVEN,
    ) -> None:
        if self.session_id is not None or self._closing is not None:
            raise FacecastException("an AvatarSession starts once; create another for a new one")
        url = _setting(livekit_url, "LIVEKIT_URL")
        key = _setting(livekit_api_key, "LIVEKIT_API_KEY")
        secret = _setting(livekit_api_secret, "LIVEKIT_API_SECRET")
        if not url or not key or not secret:
            raise FacecastException(
                "livekit_url, livekit_api_key and livekit_api_secret must be set by arguments "
                "or the LIVEKIT_URL, LIVEKIT_API_KEY and LIVEKIT_API_SECRET environment variables"
            )
        agent_identity = self._agent_identity(room)
        await super().start(agent_session, room)

        token = worker_token(
            api_key=key,
            api_secret=secret,
            room_name=room.name,
            identity=self._avatar_participant_identity,
            name=self._avatar_participant_name,
            agent_identity=agent_identity,
        )
        request = CreateSessionRequest(
            avatar_id=self._avatar_id,
            quality=self._quality,
            transport=LiveKitTransport(
                url=url,
                room_name=room.name,
                worker_token=token,
                worker_identity=self._avatar_participant_identity,
                audio_source="data_stream",
            ),
            **self._options,
        )
        self._client = AsyncFacecast(self._api_key, base_url=self._api_url)
        logger.debug("creating the Facecast session", extra={"room": room.name})
        try:
            session = await self._client.sessions.create(request)
        except (FacecastError, FacecastConnectionError) as error:
            await self.aclose()
            raise FacecastException(f"the Facecast API refused the session: {error}") from error
        self.session_id = session.id
        logger.info(
            "Facecast session created",
            extra={"session_id": session.id, "room": room.name, "quality": self._quality},
        )

        # Rebinds only the tail of the output chain, so the transcript synchroniser and the
        # recorder stay in front of it. The worker says when a segment really starts playing
        # (`lk.playback_started`), and nothing is sent before its video track is published.
        agent_session.output.replace_audio_tail(
            DataStreamAudioOutput(
                room=room,
                destination_identity=self._avatar_participant_identity,
                wait_remote_track=rtc.TrackKind.KIND_VIDEO,
                wait_playback_start=True,
            )
        )
        # Outside a job nothing else ends the session: the agent leaving ends it too.
        room.on("disconnected", self._on_room_disconnected)
        agent_session.on("close", self._on_agent_session_close)

    def _agent_identity(self, room: rtc.Room) -> str:
        job_ctx = get_job_context(required=False)
        if job_ctx is not None:
            return job_ctx.local_participant_identity
        if room.isconnected():
            return room.local_participant.identity
        raise FacecastException(
            "AvatarSession.start() needs an agent job or a connected room: connect the room first"
        )

    def _on_room_disconnected(self, *_: Any) -> None:
        self._begin_close()

    def _on_agent_session_close(self, _: CloseEvent) -> None:
        self._begin_close()

    def _begin_close(self) -> asyncio.Task[None]:
        if self._closing is None:
            self._closing = asyncio.create_task(self._close(), name="facecast.AvatarSession.close")
        return self._closing

    async def aclose(self) -> None:
        """End the Facecast session and let go of the room; safe to call more than once."""
        await asyncio.shield(self._begin_close())

    async def _close(self) -> None:
        if self._room is not None:
            self._room.off("disconnected", self._on_room_disconnected)
        if self._agent_session is not None:
            self._agent_session.off("close", self._on_agent_session_close)
        try:
            await self._end_session()
        finally:
            if self._client is not None:
                await self._client.aclose()
            # Facecast drains its worker when the API ends the session. The base class would
            # also remove the worker from the room if the agent is still in it (the end request
            # and the job's own disconnect race). A removed worker exits at once, and if that
            # is before the operator has seen the end, the session fails (`pod_failed`) instead
            # of ending `user_ended`. So the base class gets no room to remove the worker from,
            # and the handler it registered on the room is dropped here instead.
            if self._room is not None:
                self._room.off("connection_state_changed", self._on_connection_state_changed)
                self._room = None
            await super().aclose()

    async def _end_session(self) -> None:
        if self.session_id is None or self._client is None:
            return
        try:
            ended = await asyncio.wait_for(self._client.sessions.end(self.session_id), END_TIMEOUT)
        except (FacecastError, FacecastConnectionError, TimeoutError) as error:
            logger.warning(
                "could not end the Facecast session; it ends on its idle timeout",
                extra={"session_id": self.session_id, "error": type(error).__name__},
            )
            return
        logger.info(
            "Facecast session ending", extra={"session_id": ended.id, "status": ended.status}
        )
