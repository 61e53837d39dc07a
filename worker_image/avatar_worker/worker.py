"""One session, start to end: load, join, publish from the first frame, listen, report, drain.

Order matters for the first-frame latency: the renderer is built and the frame clock started
*before* joining, so the tracks carry frames the moment they are published (agents wait for the
avatar's video track before they speak).
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Sequence
from datetime import UTC, datetime

from avatar_crds.enums import AudioSource, FailureReason, TransportType
from avatar_crds.session import AvatarSession, LiveKitTransport, WorkerStatus
from avatar_crds.speech import SpeakTaskReport
from avatar_worker.audio.agent_protocol import AgentAudioInput
from avatar_worker.audio.segments import PlaybackEvent, SegmentKind, SpeechBuffer
from avatar_worker.audio.synthetic import SyntheticPolicy
from avatar_worker.audio.track import TrackAudioInput
from avatar_worker.config import SessionSource, WorkerConfig, read_avatar_image
from avatar_worker.drain import DrainMode, ShutdownSignals, drain_mode
from avatar_worker.errors import WorkerError
from avatar_worker.logging import add_secret, bind_session, get_logger, redact
from avatar_worker.media.pipeline import Pipeline
from avatar_worker.media.publisher import MediaOutput
from avatar_worker.render import build_renderer, needs_portrait
from avatar_worker.render.base import Renderer
from avatar_worker.render.portrait import Portrait, load_portrait
from avatar_worker.render.resolution import VideoFormat, video_format
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


class Worker:
    def __init__(
        self,
        config: WorkerConfig,
        source: SessionSource,
        sink: StatusSink,
        *,
        signals: ShutdownSignals | None = None,
    ) -> None:
        self.config = config
        self._source = source
        self._sink = sink
        self.signals = signals or ShutdownSignals()
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
            speech=self.speaker.reports() if self.speaker is not None else [],
        )

    def _on_audio(self) -> None:
        self.last_audio_at = datetime.now(UTC)
        if self.first_input_monotonic is None:
            self.first_input_monotonic = time.monotonic()
            log.info("first audio received")

    # -- the session ------------------------------------------------------------------------

    async def run(self) -> int:
        reporter_task: asyncio.Task[None] | None = None
        try:
            session = await asyncio.to_thread(self._source.session)
            meta = session.metadata
            bind_session(
                meta.namespace or self.config.namespace, meta.name or self.config.session_name
            )
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
        renderer = await asyncio.to_thread(self._build_renderer, session, fmt)
        token = read_token(self.config.token_file)
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
        pipeline = self.pipeline = Pipeline(
            renderer,
            output,
            speech,
            on_events=self._on_playback_events,
            synthetic=synthetic,
            first_input_at=lambda: self.first_input_monotonic,
        )
        pipeline_task = asyncio.create_task(pipeline.run(), name="frame-clock")
        transport = self.transport = Transport(
            url=room_spec.url,
            token=token,
            identity=room_spec.worker_identity,
            attachments=attachments,
            join_deadline_s=self.config.join_deadline_s,
            rejoin_deadline_s=self.config.rejoin_deadline_s,
            allow=self.config.transport_allow,
        )
        first_frame_task = asyncio.create_task(self._report_first_frame(pipeline))
        self._on_session(session)
        speaker_task = asyncio.create_task(speaker.run(), name="speak")
        follow_task = asyncio.create_task(self._follow(session), name="follow-session")
        try:
            await transport.connect()
            self.ready.set()
            outcome = await self._wait_for_end(transport, pipeline_task)
            if isinstance(outcome, RoomClosed):
                log.info("the room ended the session", reason=outcome.reason)
            else:
                mode = (
                    DrainMode.CUT
                    if self.signals.cut.is_set()
                    else drain_mode(await asyncio.to_thread(self._source.current_status))
                )
                await self._drain(mode)
            return EXIT_OK
        finally:
            first_frame_task.cancel()
            for task in (follow_task, speaker_task):
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await speaker.aclose()
            await engines.aclose()
            await self.messages.aclose()
            pipeline.stop()
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await asyncio.wait_for(pipeline_task, timeout=2.0)
            if self.agent_input is not None:
                await self.agent_input.aclose()
            if self.track_input is not None:
                await self.track_input.aclose()
            await transport.leave()
            await self.reporter.stop()
            await output.aclose()
            renderer.close()

    def _build_renderer(self, session: AvatarSession, fmt: VideoFormat) -> Renderer:
        spec = session.spec

        def portrait() -> Portrait:
            avatar = self._source.avatar(spec.avatar_ref)
            data = read_avatar_image(avatar, self.config.avatar_store)
            return load_portrait(data, avatar.face)

        if needs_portrait(spec.quality):
            log.info("loading the avatar", avatar=spec.avatar_ref)
        return build_renderer(spec.quality, fmt, portrait)

    async def _follow(self, session: AvatarSession) -> None:
        async for update in self._source.updates(session):
            self._on_session(update)

    def _on_session(self, session: AvatarSession) -> None:
        """A version of the session: speak what is new, cut what an interrupt covers, relay
        a warning of a near cutoff."""
        if self.speaker is not None:
            self.speaker.update(session.spec)
        if session.status is not None:
            self.messages.ending_soon(session.status.ending_soon)

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

    async def _wait_for_end(
        self, transport: Transport, pipeline_task: asyncio.Task[None]
    ) -> RoomClosed | None:
        """RoomClosed when the room ended it; None when asked to shut down."""
        closed = asyncio.create_task(transport.wait_closed())
        drain = asyncio.create_task(self.signals.drain.wait())
        try:
            done, _ = await asyncio.wait(
                {closed, drain, pipeline_task}, return_when=asyncio.FIRST_COMPLETED
            )
        finally:
            for task in (closed, drain):
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
