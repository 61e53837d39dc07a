"""The LiveKit Agents avatar protocol, as spoken by `livekit-agents`' `DataStreamAudioOutput`.

Names and payloads match livekit/agents/voice/avatar/_datastream_io.py (livekit-agents 1.x):

- speech arrives as byte streams on topic `lk.audio_stream`, one stream per speech segment,
  int16 little-endian interleaved PCM, with string attributes `sample_rate` and `num_channels`;
  the stream's end (its trailer) ends the segment;
- the sender calls RPC `lk.clear_buffer` (empty payload) to interrupt; the worker replies "ok",
  flushes what it buffered and queued, then reports the interrupted segment;
- the worker calls RPC `lk.playback_started` (empty payload) on the sender when a segment starts
  playing, and `lk.playback_finished` with `{"playback_position": <seconds>, "interrupted": <bool>}`
  once per segment when it has played out or was interrupted;
- the worker's own participant attribute `lk.publish_on_behalf` (set in its token by whoever
  minted it) names the agent it speaks for: only that participant may drive it.

As upstream, a stream that gets no data or trailer for 10 s, or that is superseded by a newer
stream from the same sender, is ended instead of blocking the speech queue forever.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass

from livekit import rtc

from avatar_worker.audio.pcm import ByteAligner, Resampler, to_mono
from avatar_worker.audio.segments import (
    PlaybackEvent,
    PlaybackFinished,
    PlaybackStarted,
    SegmentInfo,
    SegmentKind,
    SpeechBuffer,
)
from avatar_worker.logging import get_logger

log = get_logger("avatar_worker.agent_protocol")

AUDIO_STREAM_TOPIC = "lk.audio_stream"
RPC_CLEAR_BUFFER = "lk.clear_buffer"
RPC_PLAYBACK_STARTED = "lk.playback_started"
RPC_PLAYBACK_FINISHED = "lk.playback_finished"
ATTRIBUTE_PUBLISH_ON_BEHALF = "lk.publish_on_behalf"
STREAM_IDLE_TIMEOUT = 10.0
RPC_MAX_RETRIES = 3
RPC_RETRY_DELAY = 0.1


def playback_finished_payload(position: float, interrupted: bool) -> str:
    return json.dumps({"playback_position": position, "interrupted": interrupted})


@dataclass(frozen=True)
class _Notification:
    destination: str
    method: str
    payload: str


class AgentAudioInput:
    """Receives agent speech into the speech buffer and reports playback back to the agent."""

    def __init__(
        self,
        speech: SpeechBuffer,
        *,
        configured_sender: str | None,
        on_audio: Callable[[], None],
        flush_output: Callable[[], Awaitable[None]],
        on_interrupt: Callable[[], None] = lambda: None,
    ) -> None:
        self._speech = speech
        self._configured_sender = configured_sender
        self._on_audio = on_audio
        self._flush_output = flush_output
        self._on_interrupt = on_interrupt
        self._room: rtc.Room | None = None
        self._readers: dict[str, asyncio.Task[None]] = {}
        self._open_by_sender: dict[str, str] = {}
        self._superseded: dict[str, asyncio.Event] = {}
        self._outbox: asyncio.Queue[_Notification] = asyncio.Queue()
        self._sender_task: asyncio.Task[None] | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.accepting = True
        self.segments_received = 0

    # -- who may drive the avatar -----------------------------------------------------------

    def expected_sender(self) -> str | None:
        """`lk.publish_on_behalf` on our own participant, else the configured identity."""
        if self._room is not None and self._room.isconnected():
            on_behalf = self._room.local_participant.attributes.get(ATTRIBUTE_PUBLISH_ON_BEHALF)
            if on_behalf:
                return on_behalf
        return self._configured_sender

    def _allowed(self, identity: str) -> bool:
        expected = self.expected_sender()
        return expected is None or identity == expected

    # -- RoomAttachment ---------------------------------------------------------------------

    async def attach(self, room: rtc.Room) -> None:
        self._room = room
        room.register_byte_stream_handler(AUDIO_STREAM_TOPIC, self._on_stream)
        room.local_participant.register_rpc_method(RPC_CLEAR_BUFFER, self._on_clear_buffer)
        if self._sender_task is None or self._sender_task.done():
            self._sender_task = asyncio.create_task(self._send_notifications())
        log.info("listening for agent audio", expected_sender=self.expected_sender())

    async def detach(self, room: rtc.Room) -> None:
        room.unregister_byte_stream_handler(AUDIO_STREAM_TOPIC)
        with contextlib.suppress(Exception):
            room.local_participant.unregister_rpc_method(RPC_CLEAR_BUFFER)
        for task in list(self._readers.values()):
            task.cancel()
        if self._room is room:
            self._room = None

    async def aclose(self) -> None:
        """Deliver what is queued for the agent (bounded), then stop."""
        if self._sender_task is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self._outbox.join(), timeout=3.0)
            self._sender_task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._sender_task
        for task in list(self._readers.values()) + list(self._tasks):
            task.cancel()

    # -- incoming speech --------------------------------------------------------------------

    def _on_stream(self, reader: rtc.ByteStreamReader, sender: str) -> None:
        if not self._allowed(sender):
            log.warning(
                "ignoring an audio stream from an unexpected participant",
                sender=sender,
                expected_sender=self.expected_sender(),
            )
            return
        segment_id = reader.info.stream_id
        previous = self._open_by_sender.get(sender)
        if previous is not None and previous in self._superseded:
            # The sender never overlaps its streams: the previous trailer was lost.
            self._superseded[previous].set()
        self.segments_received += 1
        if not self.accepting:
            log.info("refusing a speech segment while draining", segment=segment_id)
            self.notify(
                [PlaybackFinished(segment_id, SegmentKind.AGENT, sender, 0.0, interrupted=True)]
            )
            return
        self._speech.open(segment_id, SegmentKind.AGENT, sender=sender)
        self._open_by_sender[sender] = segment_id
        self._superseded[segment_id] = asyncio.Event()
        task = asyncio.get_running_loop().create_task(self._read(reader, segment_id, sender))
        self._readers[segment_id] = task
        task.add_done_callback(lambda _: self._readers.pop(segment_id, None))

    async def _read(self, reader: rtc.ByteStreamReader, segment_id: str, sender: str) -> None:
        attributes = reader.info.attributes or {}
        try:
            sample_rate = int(attributes["sample_rate"])
            channels = int(attributes["num_channels"])
        except (KeyError, ValueError):
            log.error("audio stream without valid sample_rate/num_channels", segment=segment_id)
            self._speech.close(segment_id)
            self._forget(segment_id, sender)
            return
        log.info(
            "speech segment started",
            segment=segment_id,
            sender=sender,
            sample_rate=sample_rate,
            channels=channels,
        )
        aligner = ByteAligner(2 * channels)
        resampler = Resampler(sample_rate, self._speech.sample_rate)
        superseded = self._superseded[segment_id]
        received = 0
        try:
            async for data in _chunks(reader, superseded):
                pcm = to_mono(aligner.push(data), channels)
                received += len(pcm)
                if len(pcm):
                    self._on_audio()
                if not self._speech.append(segment_id, resampler.push(pcm)):
                    continue  # cleared: the rest of this stream is discarded
            self._speech.append(segment_id, resampler.flush())
        finally:
            self._speech.close(segment_id)
            self._forget(segment_id, sender)
            log.info(
                "speech segment received",
                segment=segment_id,
                seconds=round(received / max(sample_rate, 1), 3),
            )

    def _forget(self, segment_id: str, sender: str) -> None:
        self._superseded.pop(segment_id, None)
        if self._open_by_sender.get(sender) == segment_id:
            del self._open_by_sender[sender]

    # -- interruption -----------------------------------------------------------------------

    def _on_clear_buffer(self, data: rtc.RpcInvocationData) -> str:
        if not self._allowed(data.caller_identity):
            log.warning("clear_buffer from an unexpected participant", caller=data.caller_identity)
            return "reject"

        def interrupts(info: SegmentInfo) -> bool:
            return info.kind is SegmentKind.AGENT and info.sender == data.caller_identity

        finished = self._speech.clear(interrupts)
        self._on_interrupt()  # audio already taken for the next frames is dropped too
        log.info("clear_buffer", caller=data.caller_identity, interrupted=len(finished))
        task = asyncio.get_running_loop().create_task(self._flush_then_report(finished))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return "ok"

    async def _flush_then_report(self, finished: Sequence[PlaybackEvent]) -> None:
        await self._flush_output()
        self.notify(finished)

    # -- outgoing notifications -------------------------------------------------------------

    def notify(self, events: Sequence[PlaybackEvent]) -> None:
        """Queue the RPCs for playback events of agent segments (others are not reported)."""
        for event in events:
            if event.kind is not SegmentKind.AGENT or event.sender is None:
                continue
            if isinstance(event, PlaybackStarted):
                self._outbox.put_nowait(_Notification(event.sender, RPC_PLAYBACK_STARTED, ""))
            else:
                payload = playback_finished_payload(event.position, event.interrupted)
                self._outbox.put_nowait(_Notification(event.sender, RPC_PLAYBACK_FINISHED, payload))

    async def _send_notifications(self) -> None:
        while True:
            note = await self._outbox.get()
            try:
                await self._send(note)
            finally:
                self._outbox.task_done()

    async def _send(self, note: _Notification) -> None:
        for attempt in range(1, RPC_MAX_RETRIES + 1):
            room = self._room
            if room is None or not room.isconnected():
                log.warning("not in the room; dropping a notification", method=note.method)
                return
            if note.destination not in room.remote_participants:
                # Nobody to tell, and waiting for an answer would hold the worker's shutdown
                # (which delivers what is queued) for the whole RPC timeout.
                log.info("the agent has left; dropping a notification", method=note.method)
                return
            try:
                await room.local_participant.perform_rpc(
                    destination_identity=note.destination, method=note.method, payload=note.payload
                )
                log.info("notified", method=note.method, payload=note.payload)
                return
            except rtc.RpcError as error:
                unsupported = error.code == rtc.RpcError.ErrorCode.UNSUPPORTED_METHOD
                if unsupported and note.method == RPC_PLAYBACK_STARTED:
                    # The agent did not ask for start notifications (wait_playback_start=False).
                    return
                if attempt == RPC_MAX_RETRIES:
                    log.error(
                        "notification failed",
                        method=note.method,
                        error=error.message,
                        code=error.code,
                    )
                    return
                await asyncio.sleep(RPC_RETRY_DELAY)


async def _chunks(reader: rtc.ByteStreamReader, superseded: asyncio.Event) -> AsyncIterator[bytes]:
    """The reader's chunks until its trailer, a newer stream, or `STREAM_IDLE_TIMEOUT` idle."""
    stop = asyncio.ensure_future(superseded.wait())
    try:
        while True:
            next_chunk = asyncio.ensure_future(reader.__anext__())
            done, _ = await asyncio.wait(
                {next_chunk, stop}, timeout=STREAM_IDLE_TIMEOUT, return_when=asyncio.FIRST_COMPLETED
            )
            if next_chunk in done:
                try:
                    yield next_chunk.result()
                except StopAsyncIteration:
                    return
                continue
            next_chunk.cancel()
            log.warning(
                "audio stream ended without its trailer",
                stream=reader.info.stream_id,
                why="superseded" if stop in done else "idle",
            )
            return
    finally:
        stop.cancel()
