"""Speech from an audio track another participant publishes (`audioSource: track`).

The worker subscribes to the first audio track of `subscribeToIdentity` (or, when that is not
set, of the first participant that publishes one) and feeds it into the speech buffer as one
*live* segment per subscription: it plays as it arrives, its backlog is kept short, and nobody
is notified about it. Audio counts as received (`lastAudioAt`) when it is louder than silence.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable

import numpy as np
from livekit import rtc

from avatar_worker.audio.segments import SegmentKind, SpeechBuffer
from avatar_worker.logging import get_logger
from avatar_worker.render.visemes import rms_dbfs

log = get_logger("avatar_worker.track_input")

AUDIBLE_DBFS = -50.0


class TrackAudioInput:
    def __init__(
        self,
        speech: SpeechBuffer,
        *,
        identity: str | None,
        on_audio: Callable[[], None],
    ) -> None:
        self._speech = speech
        self._identity = identity
        self._on_audio = on_audio
        self._room: rtc.Room | None = None
        self._task: asyncio.Task[None] | None = None
        self._track_sid: str | None = None
        self.subscribed = asyncio.Event()

    def _wanted(self, participant: rtc.RemoteParticipant) -> bool:
        return self._identity is None or participant.identity == self._identity

    # -- RoomAttachment ---------------------------------------------------------------------

    async def attach(self, room: rtc.Room) -> None:
        self._room = room
        room.on("track_published", self._on_track_published)
        room.on("track_subscribed", self._on_track_subscribed)
        room.on("track_unsubscribed", self._on_track_gone)
        room.on("participant_disconnected", self._on_participant_gone)
        for participant in room.remote_participants.values():
            for publication in participant.track_publications.values():
                self._on_track_published(publication, participant)
        log.info("waiting for an audio track", identity=self._identity)

    async def detach(self, room: rtc.Room) -> None:
        for event, handler in (
            ("track_published", self._on_track_published),
            ("track_subscribed", self._on_track_subscribed),
            ("track_unsubscribed", self._on_track_gone),
            ("participant_disconnected", self._on_participant_gone),
        ):
            with contextlib.suppress(Exception):
                room.off(event, handler)  # type: ignore[arg-type]
        await self._stop()
        self._room = None

    async def aclose(self) -> None:
        await self._stop()

    # -- events -----------------------------------------------------------------------------

    def _on_track_published(
        self, publication: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if publication.kind != rtc.TrackKind.KIND_AUDIO or not self._wanted(participant):
            return
        if self._track_sid is not None:
            return  # already listening to one
        if self._identity is None:
            self._identity = participant.identity  # lock onto the first speaker
        log.info("subscribing", identity=participant.identity, track=publication.sid)
        publication.set_subscribed(True)

    def _on_track_subscribed(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if track.kind != rtc.TrackKind.KIND_AUDIO or not self._wanted(participant):
            return
        if self._track_sid is not None:
            return
        self._track_sid = publication.sid
        segment_id = f"track-{publication.sid}"
        self._speech.open(segment_id, SegmentKind.TRACK, sender=None, live=True)
        stream = rtc.AudioStream.from_track(
            track=track, sample_rate=self._speech.sample_rate, num_channels=1
        )
        self._task = asyncio.get_running_loop().create_task(self._read(stream, segment_id))
        self.subscribed.set()
        log.info(
            "listening to the audio track", identity=participant.identity, track=publication.sid
        )

    def _on_track_gone(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if publication.sid == self._track_sid:
            asyncio.get_running_loop().create_task(self._stop())

    def _on_participant_gone(self, participant: rtc.RemoteParticipant) -> None:
        if self._track_sid is not None and participant.identity == self._identity:
            asyncio.get_running_loop().create_task(self._stop())

    async def _stop(self) -> None:
        task, self._task = self._task, None
        if self._track_sid is not None:
            self._speech.close(f"track-{self._track_sid}")
            self._track_sid = None
            self.subscribed.clear()
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def _read(self, stream: rtc.AudioStream, segment_id: str) -> None:
        try:
            async for event in stream:
                frame = event.frame
                pcm = np.frombuffer(frame.data, dtype=np.int16).copy()
                if rms_dbfs(pcm) > AUDIBLE_DBFS:
                    self._on_audio()
                self._speech.append(segment_id, pcm)
        finally:
            await stream.aclose()
