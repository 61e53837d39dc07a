"""One session, start to end: load, join, publish from the first frame, listen, report, drain.

Order matters for the first-frame latency: the session's avatar and room token are read side
by side, then the room is joined while the renderer is prepared (the slow part of a new
avatar), and the tracks are published only once the frame clock runs, so they carry frames the
moment they are published (agents wait for the avatar's video track before they speak). A pool
slot prepares a kept avatar from its worker's rig cache (`render.rig_cache`).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from avatar_crds.avatar import AvatarSpec
from avatar_crds.enums import AudioSource, FailureReason, TransportType
from avatar_crds.session import AvatarSession, AvatarSessionSpec, LiveKitTransport, WorkerStatus
from avatar_crds.speech import SpeakTaskReport
from avatar_worker.audio.agent_protocol import AgentAudioInput
from avatar_worker.audio.segments import PlaybackEvent, SegmentKind, SpeechBuffer
from avatar_worker.audio.synthetic import SyntheticPolicy
from avatar_worker.audio.track import TrackAudioInput
from avatar_worker.config import SessionSource, WorkerConfig, read_avatar_image
from avatar_worker.drain import DrainMode, ShutdownSignals, drain_mode, leave_mode
from avatar_worker.errors import WorkerError
from avatar_worker.logging import add_secret, bind_session, get_logger, redact
from avatar_worker.media.pipeline import Pipeline
from avatar_worker.media.publisher import MediaOutput
from avatar_worker.render import build_renderer, needs_portrait
from avatar_worker.render.base import Renderer
from avatar_worker.render.lite import LiteRig
from avatar_worker.render.portrait import Portrait, load_portrait
from avatar_worker.render.resolution import VideoFormat, video_format
from avatar_worker.render.rig_cache import RigCache, RigKey
from avatar_worker.reporting import StatusReporter, StatusSink
from avatar_worker.session_messages import SessionMessages
from avatar_worker.speak.engines import Engines
from avatar_worker.speak.executor import SpeakExecutor
from avatar_worker.transport.livekit import LiveKitTransport as Transport
from avatar_worker.transport.livekit import RoomAttachment, RoomClosed, read_token

log = get_logger("avatar_worker")

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_INTERNAL = 2

TokenSource = Callable[[], str]
"""Reads the room token (blocking; called from a worker thread): the mounted file of a
per-session pod (`read_token`), or the session's Secret through the API for a pool slot."""


class Worker:
    """One session. Alone in its pod it runs until the room ends or a signal drains it; as a
    pool slot (`pooled`) it also leaves once the session is over (ending or terminal) or when
    told to (`leave`), and reports `leftAt` once it has left the room."""

    def __init__(
        self,
        config: WorkerConfig,
        source: SessionSource,
        sink: StatusSink,
        *,
        signals: ShutdownSignals | None = None,
        token: TokenSource | None = None,
        pooled: bool = False,
        rigs: RigCache | None = None,
    ) -> None:
        self.config = config
        self._source = source
        self._sink = sink
        self.signals = signals or ShutdownSignals()
        self._token = token or (lambda: read_token(config.token_file))
        self._pooled = pooled
        self._rigs = rigs  # a pool worker's, shared by its slots; None: prepared for this session
        self._leaving = asyncio.Event()
        self._leave_mode = DrainMode.CUT
        self._leave_why = ""
        self.left_at: datetime | None = None
        self.started_monotonic = time.monotonic()
        self.last_audio_at: datetime | None = None
        self.first_input_monotonic: float | None = None
        self.pipeline: Pipeline | None = None
        self.transport: Transport | None = None
        self.output: MediaOutput | None = None
        self.speech: SpeechBuffer | None = None
        self.agent_input: AgentAudioInput | None = None
        self.track_input: TrackAudioInput | None = None
        self.speaker: SpeakExecutor | None = None
        self.messages = SessionMessages()
        self.reporter = StatusReporter(sink, self.snapshot, interval_s=config.heartbeat_s)
        self.ready = asyncio.Event()  # joined and publishing
        self.exit_code: int | None = None
        self.drained_with: DrainMode | None = None

    # -- status -----------------------------------------------------------------------------

    def snapshot(self) -> WorkerStatus:
        stats = self.pipeline.stats if self.pipeline is not None else None
        now = time.monotonic()
        if self.speaker is not None and self.speaker.speaking:
            self._on_audio()  # speech is activity, for as long as it plays
        return WorkerStatus(
            heartbeat_at=datetime.now(UTC),
            first_frame_at=stats.first_frame_at if stats else None,
            last_audio_at=self.last_audio_at,
            frames=stats.frames if stats else 0,
            billable_seconds=round(stats.billable_seconds(now), 3) if stats else 0.0,
            left_at=self.left_at,
            speech=self.speaker.reports() if self.speaker is not None else [],
        )

    def _on_audio(self) -> None:
        self.last_audio_at = datetime.now(UTC)
        if self.first_input_monotonic is None:
            self.first_input_monotonic = time.monotonic()
            log.info("first audio received")

    # -- the session ------------------------------------------------------------------------

    async def run(self, session: AvatarSession | None = None) -> int:
        """Serve the session: `session` as just read from the source (a pool slot's, read to
        place it), else read here."""
        reporter_task: asyncio.Task[None] | None = None
        try:
            if session is None:
                session = await asyncio.to_thread(self._source.session)
            meta = session.metadata
            bind_session(
                meta.namespace or self.config.namespace, meta.name or self.config.session_name
            )
            if self._pooled and leave_mode(session.status) is not None:
                # Over while it waited for its slot: joining now would only flash the avatar.
                log.info("the session is over before it started", phase=session.status.phase)
                self.left_at = datetime.now(UTC)
                await self.reporter.stop()
                self.exit_code = EXIT_OK
                return self.exit_code
            reporter_task = asyncio.create_task(self.reporter.run())
            self.exit_code = await self._run(session)
        except WorkerError as failure:
            log.error("session failed", reason=failure.reason.value, message=failure.message)
            await self.reporter.fail(failure.reason, failure.message)
            self.exit_code = EXIT_FAILED
        except Exception as exc:
            log.exception("worker crashed")
            await self.reporter.fail(
                FailureReason.INTERNAL_ERROR, redact(f"{type(exc).__name__}: {exc}")
            )
            self.exit_code = EXIT_INTERNAL
        finally:
            if reporter_task is not None:
                reporter_task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await reporter_task
        return self.exit_code

    async def _run(self, session: AvatarSession) -> int:
        spec = session.spec
        if spec.transport.type is not TransportType.LIVEKIT or spec.transport.livekit is None:
            raise WorkerError(
                FailureReason.ROOM_UNREACHABLE,
                f"the {spec.transport.type.value} transport is not supported by this worker yet",
            )
        room_spec = spec.transport.livekit
        fmt = video_format(spec.quality, spec.aspect_ratio, spec.video)
        log.info(
            "starting",
            quality=spec.quality.value,
            width=fmt.width,
            height=fmt.height,
            codec=spec.video.codec.value,
            audio_source=room_spec.audio_source.value,
            room=room_spec.room_name,
            identity=room_spec.worker_identity,
        )
        avatar, token = await self._avatar_and_token(spec)
        add_secret(token)

        output = self.output = MediaOutput(fmt, spec.video.codec)
        speech = self.speech = SpeechBuffer(output.sample_rate)
        attachments: list[RoomAttachment] = [output, self.messages]
        inputs = self._make_input(room_spec, speech)
        attachments.append(inputs)
        engines = Engines(self.config.tts)
        speaker = self.speaker = SpeakExecutor(
            speech,
            engines,
            self.config.tts.catalogue(),
            reports=_reported_speech(session),
            on_change=self.reporter.report_now,
            drop_taken_audio=self._interrupted,
            flush_output=self._flush_output,
        )
        synthetic = (
            SyntheticPolicy(self.config.synthetic_after_s)
            if room_spec.synthetic_audio_if_no_input
            else None
        )
        transport = self.transport = Transport(
            url=room_spec.url,
            token=token,
            identity=room_spec.worker_identity,
            attachments=attachments,
            join_deadline_s=self.config.join_deadline_s,
            rejoin_deadline_s=self.config.rejoin_deadline_s,
            allow=self.config.transport_allow,
        )
        # The room is joined while the renderer is prepared (a new avatar's rig, a neural
        # tier's face), its tracks published only once the frame clock runs.
        joining = asyncio.create_task(transport.connect(attach=False), name="join")
        preparing = asyncio.ensure_future(
            asyncio.to_thread(self._build_renderer, session, fmt, avatar)
        )
        self._on_session(session)
        speaker_task = asyncio.create_task(speaker.run(), name="speak")
        follow_task = asyncio.create_task(self._follow(session), name="follow-session")
        pipeline: Pipeline | None = None
        pipeline_task: asyncio.Task[None] | None = None
        first_frame_task: asyncio.Task[None] | None = None
        try:
            renderer = await preparing
            pipeline = self.pipeline = Pipeline(
                renderer,
                output,
                speech,
                on_events=self._on_playback_events,
                synthetic=synthetic,
                first_input_at=lambda: self.first_input_monotonic,
            )
            pipeline_task = asyncio.create_task(pipeline.run(), name="frame-clock")
            first_frame_task = asyncio.create_task(self._report_first_frame(pipeline))
            if self._leaving.is_set():
                log.info("leaving the session before it was published", why=self._leave_why)
                return EXIT_OK
            await joining
            await self._first_frame_captured(output, pipeline_task)
            await transport.attach()
            self.ready.set()
            outcome = await self._wait_for_end(transport, pipeline_task)
            if isinstance(outcome, RoomClosed):
                log.info("the room ended the session", reason=outcome.reason)
            else:
                if self._leaving.is_set():
                    mode = DrainMode.CUT if self.signals.cut.is_set() else self._leave_mode
                    log.info("leaving the session", why=self._leave_why, mode=mode.value)
                elif self.signals.cut.is_set():
                    mode = DrainMode.CUT
                else:
                    mode = drain_mode(await asyncio.to_thread(self._source.current_status))
                await self._drain(mode)
            return EXIT_OK
        finally:
            if first_frame_task is not None:
                first_frame_task.cancel()
            for task in (follow_task, speaker_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await speaker.aclose()
            await engines.aclose()
            await self.messages.aclose()
            if pipeline is not None and pipeline_task is not None:
                pipeline.stop()
                with contextlib.suppress(Exception, asyncio.CancelledError):
                    await asyncio.wait_for(pipeline_task, timeout=2.0)
            if self.agent_input is not None:
                await self.agent_input.aclose()
            if self.track_input is not None:
                await self.track_input.aclose()
            await transport.leave()
            # A join still under way ends in the room it was joining, and leaves it at once:
            # abandoned while it connects, it would keep the worker in that room.
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await joining
            if self._pooled:
                self.left_at = datetime.now(UTC)
            try:
                await output.aclose()
                preparing.add_done_callback(_close_renderer)
            finally:
                await self.reporter.stop()  # the last report: leftAt once all is let go

    async def _avatar_and_token(self, spec: AvatarSessionSpec) -> tuple[StoredAvatar | None, str]:
        """The session's avatar (read and checked, not yet prepared; None for a tier that draws
        none) and its room token, read side by side: each waits on the API server. An avatar
        that cannot be read is reported before a token that cannot, as when read in turn."""
        reading = asyncio.ensure_future(asyncio.to_thread(self._token))
        try:
            avatar = await asyncio.to_thread(self._read_avatar, spec)
        except BaseException:
            reading.add_done_callback(_retrieved)
            raise
        return avatar, await reading

    def _read_avatar(self, spec: AvatarSessionSpec) -> StoredAvatar | None:
        if not needs_portrait(spec.quality):
            return None
        log.info("loading the avatar", avatar=spec.avatar_ref)
        # Read every session, through the API with this session's grant, and from the store
        # checked against the Avatar's sha256: the rig cache spares only the drawing's
        # preparation, never the checks that the session may use this avatar.
        avatar = self._source.avatar(spec.avatar_ref)
        return StoredAvatar(avatar, read_avatar_image(avatar, self.config.avatar_store))

    def _build_renderer(
        self, session: AvatarSession, fmt: VideoFormat, avatar: StoredAvatar | None
    ) -> Renderer:
        spec = session.spec
        namespace = session.metadata.namespace or self.config.namespace or ""
        started = time.monotonic()
        cached = False

        def portrait() -> Portrait | LiteRig:
            nonlocal cached
            if avatar is None:
                raise RuntimeError(f"the {spec.quality.value} tier draws no avatar")
            if self._rigs is None:
                return avatar.portrait()
            key = RigKey.of(namespace, spec.avatar_ref, avatar.spec, fmt.size)
            cached = key in self._rigs
            return self._rigs.rig(key, lambda: LiteRig(avatar.portrait(), fmt.size))

        renderer = build_renderer(spec.quality, fmt, portrait)
        if avatar is not None:
            seconds = round(time.monotonic() - started, 3)
            log.info("the avatar is ready", cached=cached, seconds=seconds)
        return renderer

    async def _follow(self, session: AvatarSession) -> None:
        async for update in self._source.updates(session):
            self._on_session(update)

    def _on_session(self, session: AvatarSession) -> None:
        """A version of the session: speak what is new, cut what an interrupt covers, relay
        a warning of a near cutoff; a pool slot leaves once the session is over."""
        if self.speaker is not None:
            self.speaker.update(session.spec)
        if session.status is not None:
            self.messages.ending_soon(session.status.ending_soon)
        over = leave_mode(session.status) if self._pooled else None
        if over is not None:
            self.leave(over, f"the session is {session.status.phase}")

    def leave(self, mode: DrainMode, why: str) -> None:
        """Leave the room: drain `mode` (CUT also cuts a drain under way)."""
        if mode is DrainMode.CUT:
            self.signals.cut.set()
        if self._leaving.is_set():
            return
        self._leave_mode, self._leave_why = mode, why
        self._leaving.set()

    def _make_input(self, room_spec: LiveKitTransport, speech: SpeechBuffer) -> RoomAttachment:
        if room_spec.audio_source is AudioSource.TRACK:
            self.track_input = TrackAudioInput(
                speech, identity=room_spec.subscribe_to_identity, on_audio=self._on_audio
            )
            return self.track_input
        self.agent_input = AgentAudioInput(
            speech,
            configured_sender=room_spec.subscribe_to_identity,
            on_audio=self._on_audio,
            flush_output=self._flush_output,
            on_interrupt=self._interrupted,
        )
        return self.agent_input

    def _interrupted(self) -> None:
        if self.pipeline is not None:
            self.pipeline.interrupted()

    async def _flush_output(self) -> None:
        self._interrupted()
        if self.output is not None:
            await self.output.flush()

    def _on_playback_events(self, events: Sequence[PlaybackEvent]) -> None:
        if self.agent_input is not None:
            self.agent_input.notify(events)
        if self.speaker is not None:
            self.speaker.on_playback(events)
            if self.speaker.speaking:
                self._on_audio()

    async def _report_first_frame(self, pipeline: Pipeline) -> None:
        await pipeline.wait_first_frame()
        self.reporter.report_now()

    async def _first_frame_captured(
        self, output: MediaOutput, pipeline_task: asyncio.Task[None]
    ) -> None:
        """Until the video source holds the first frame (raises what stopped the frame clock
        if it stopped before)."""
        captured = asyncio.create_task(output.capturing.wait())
        try:
            await asyncio.wait({captured, pipeline_task}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            captured.cancel()
        if not output.capturing.is_set():
            pipeline_task.result()
            raise RuntimeError("the frame clock stopped before its first frame")

    async def _wait_for_end(
        self, transport: Transport, pipeline_task: asyncio.Task[None]
    ) -> RoomClosed | None:
        """RoomClosed when the room ended it; None when asked to shut down or to leave."""
        closed = asyncio.create_task(transport.wait_closed())
        drain = asyncio.create_task(self.signals.drain.wait())
        leave = asyncio.create_task(self._leaving.wait())
        try:
            done, _ = await asyncio.wait(
                {closed, drain, leave, pipeline_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (closed, drain, leave):
                if not task.done():
                    task.cancel()
        if pipeline_task in done:
            pipeline_task.result()  # raises what stopped the frame clock
            raise RuntimeError("the frame clock stopped unexpectedly")
        if closed in done:
            return closed.result()
        return None

    # -- drain ------------------------------------------------------------------------------

    async def _drain(self, mode: DrainMode) -> None:
        speech, pipeline = self.speech, self.pipeline
        assert speech is not None
        assert pipeline is not None
        if self.agent_input is not None:
            self.agent_input.accepting = False
        if self.speaker is not None:
            self.speaker.stop_accepting()
        # Live input has no end to wait for, and queued segments never start.
        self._interrupt(speech.clear(lambda info: info.kind is SegmentKind.TRACK))
        self._interrupt(speech.clear_after_current())
        current = speech.current()
        log.info(
            "draining",
            mode=mode.value,
            current_segment=current.id if current else None,
            played_s=round(current.played_s, 3) if current else None,
        )
        if mode is DrainMode.FINISH and current is not None:
            finished = await self._wait_idle(speech, pipeline)
            if not finished:
                mode = DrainMode.CUT
        if mode is DrainMode.CUT and not speech.idle:
            await self._flush_output()
            self._interrupt(speech.clear())
        self.drained_with = mode
        pipeline.stop()
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(self.output.wait_for_playout() if self.output else _noop(), 1.0)
        log.info("drained", mode=mode.value)

    def _interrupt(self, events: Sequence[PlaybackEvent]) -> None:
        if events:
            self._on_playback_events(events)

    async def _wait_idle(self, speech: SpeechBuffer, pipeline: Pipeline) -> bool:
        """Until the current segment has played out; False on the deadline or a second signal."""
        deadline = asyncio.create_task(asyncio.sleep(self.config.drain_deadline_s))
        cut = asyncio.create_task(self.signals.cut.wait())
        idle = asyncio.create_task(pipeline.wait_speech_idle())
        try:
            done, _ = await asyncio.wait({deadline, cut, idle}, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for task in (deadline, cut, idle):
                task.cancel()
        if idle in done:
            return True
        log.warning(
            "cutting the current segment", why="second signal" if cut in done else "deadline"
        )
        return False


def _reported_speech(session: AvatarSession) -> list[SpeakTaskReport]:
    """What this session's worker reported before (a restarted worker speaks nothing twice)."""
    status = session.status
    return status.worker.speech if status is not None and status.worker is not None else []


async def _noop() -> None:
    return None


@dataclass(frozen=True)
class StoredAvatar:
    """An Avatar as read for a session, and its image's bytes as checked against it."""

    spec: AvatarSpec
    image: bytes

    def portrait(self) -> Portrait:
        return load_portrait(self.image, self.spec.face)


def _close_renderer(preparing: asyncio.Future[Renderer]) -> None:
    """Close the renderer once it is built (it may still be, after the session is over)."""
    if preparing.cancelled() or preparing.exception() is not None:
        return
    preparing.result().close()


def _retrieved(future: asyncio.Future[str]) -> None:
    """Let go of a token no longer wanted, and of its error (it would be logged as unseen)."""
    if not future.cancelled():
        future.exception()
