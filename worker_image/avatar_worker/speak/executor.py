"""Speaks the session's speak tasks one at a time, in seq order, and reports each one.

Every session update (`update`) may add tasks or raise `speechClearedThrough`. A task's speech
streams into the speech buffer as its engine synthesises it (one segment per task, kind SPEAK),
so its first sentence plays while the rest is synthesised; the frame clock lip-syncs it like
agent audio. The task is reported `speaking` when its first audio plays and `done`,
`interrupted` or `failed` when its segment ends. An interrupt that covers the task being spoken
cuts it as `lk.clear_buffer` cuts agent audio: its segment leaves the buffer, the audio already
taken for the next frames is dropped, and the audio source's queue is flushed.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import numpy as np

from avatar_crds.session import AvatarSessionSpec
from avatar_crds.speech import SpeakTask, SpeakTaskReport, SpeechState
from avatar_crds.voices import VoiceCatalogue, VoiceRefusal
from avatar_worker.audio.pcm import Resampler
from avatar_worker.audio.segments import (
    PlaybackEvent,
    PlaybackFinished,
    PlaybackStarted,
    SegmentKind,
    SpeechBuffer,
)
from avatar_worker.logging import get_logger, redact
from avatar_worker.speak.engines import Engines
from avatar_worker.speak.plan import (
    ResolvedVoice,
    SpeechLedger,
    covered_never_started,
    next_task,
    resolve_voice,
)
from avatar_worker.tts.engine import TtsEngine, TtsError

log = get_logger("avatar_worker.speak")


@dataclass
class _Speaking:
    """The task whose segment is in the speech buffer."""

    task: SpeakTask
    ended: asyncio.Future[None]
    playing: bool = False
    error: str | None = None
    synthesis: asyncio.Task[None] | None = field(default=None, repr=False)


class SpeakExecutor:
    def __init__(
        self,
        speech: SpeechBuffer,
        engines: Engines,
        voices: VoiceCatalogue,
        *,
        reports: Sequence[SpeakTaskReport] = (),
        on_change: Callable[[], None],
        drop_taken_audio: Callable[[], None],
        flush_output: Callable[[], Coroutine[Any, Any, None]],
    ) -> None:
        self._speech = speech
        self._engines = engines
        self._voices = voices
        self._ledger = SpeechLedger(reports)
        self._on_change = on_change
        self._drop_taken_audio = drop_taken_audio
        self._flush_output = flush_output
        self._spec: AvatarSessionSpec | None = None
        self._current: _Speaking | None = None
        self._wake = asyncio.Event()
        self._accepting = True
        self._flushes: set[asyncio.Task[None]] = set()

    # -- what the worker asks -----------------------------------------------------------------

    def reports(self) -> list[SpeakTaskReport]:
        return self._ledger.reports()

    @property
    def speaking(self) -> bool:
        """A task's audio is playing (speech is activity: `lastAudioAt` moves)."""
        return self._current is not None and self._current.playing

    def update(self, spec: AvatarSessionSpec) -> None:
        """A new version of the session: cut what an interrupt covers now, then speak on."""
        self._spec = spec
        self._apply_interrupt(spec)
        self._wake.set()

    def stop_accepting(self) -> None:
        """Draining: the task being spoken may finish, no other one starts."""
        self._accepting = False
        self._wake.set()

    def on_playback(self, events: Sequence[PlaybackEvent]) -> None:
        """Playback events of the speech buffer (the frame clock's, or a clear's)."""
        current = self._current
        for event in events:
            if event.kind is not SegmentKind.SPEAK or current is None:
                continue
            if event.segment_id != current.task.id or current.ended.done():
                continue
            if isinstance(event, PlaybackStarted):
                current.playing = True
                self._ledger.started(current.task.id, _now(), self._in_spec())
                log.info("speak task speaking", task=current.task.id, seq=current.task.seq)
                self._on_change()
            elif isinstance(event, PlaybackFinished):
                state = (
                    SpeechState.FAILED
                    if current.error
                    else SpeechState.INTERRUPTED
                    if event.interrupted
                    else SpeechState.DONE
                )
                self._end(current, state, played_s=event.position)

    # -- the loop -----------------------------------------------------------------------------

    async def run(self) -> None:
        while self._accepting:
            spec = self._spec
            task = (
                next_task(spec.speech, self._ledger.reports(), spec.speech_cleared_through)
                if spec is not None
                else None
            )
            if task is None:
                self._wake.clear()
                await self._wake.wait()
                continue
            await self._speak(task)

    async def aclose(self) -> None:
        self._accepting = False
        current = self._current
        if current is not None and current.synthesis is not None:
            current.synthesis.cancel()
        for flush in list(self._flushes):
            with contextlib.suppress(Exception, asyncio.CancelledError):
                await flush

    async def _speak(self, task: SpeakTask) -> None:
        spec = self._spec
        assert spec is not None
        resolved = resolve_voice(task, spec.voice, self._voices)
        engine: TtsEngine | None = None
        if isinstance(resolved, VoiceRefusal):
            why = resolved.message
        else:
            try:
                engine = self._engines.engine_for(resolved.voice)
            except TtsError as error:
                why = str(error)
        if engine is None or isinstance(resolved, VoiceRefusal):
            log.warning("speak task failed", task=task.id, message=redact(why))
            self._ledger.finished(task.id, SpeechState.FAILED, _now(), self._in_spec(), why)
            self._on_change()
            return
        current = self._current = _Speaking(task, asyncio.get_running_loop().create_future())
        self._speech.open(task.id, SegmentKind.SPEAK)
        current.synthesis = asyncio.create_task(
            self._synthesise(current, engine, resolved), name=f"speak-{task.id}"
        )
        log.info(
            "speak task started",
            task=task.id,
            seq=task.seq,
            voice=resolved.voice.id,
            chars=len(task.text),
        )
        try:
            await current.ended
        finally:
            current.synthesis.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await current.synthesis
            self._current = None

    async def _synthesise(
        self, current: _Speaking, engine: TtsEngine, voice: ResolvedVoice
    ) -> None:
        segment = current.task.id
        resampler: Resampler | None = None
        rate = 0
        try:
            stream = engine.stream(
                current.task.text, voice=voice.voice.engine_voice, speed=voice.speed
            )
            async for chunk in stream:
                if resampler is None or chunk.sample_rate != rate:
                    rate = chunk.sample_rate
                    resampler = Resampler(rate, self._speech.sample_rate)
                pcm = np.frombuffer(chunk.pcm, dtype="<i2").astype(np.int16)
                if not self._speech.append(segment, resampler.push(pcm)):
                    return  # cut: the rest is never synthesised
            if resampler is not None:
                self._speech.append(segment, resampler.flush())
        except TtsError as error:
            current.error = str(error)
            log.warning("speech synthesis failed", task=segment, message=redact(str(error)))
        except Exception as error:
            current.error = f"speech synthesis failed: {type(error).__name__}"
            log.exception("speech synthesis crashed", task=segment)
        finally:
            self._speech.close(segment)  # what was synthesised plays out, then the task ends

    # -- interrupts ---------------------------------------------------------------------------

    def _apply_interrupt(self, spec: AvatarSessionSpec) -> None:
        cleared = spec.speech_cleared_through
        current = self._current
        covered = covered_never_started(
            spec.speech,
            self._ledger.reports(),
            cleared,
            current.task.id if current is not None else None,
        )
        for task in covered:
            self._ledger.finished(task.id, SpeechState.INTERRUPTED, _now(), self._in_spec())
        if covered:
            log.info("speak tasks interrupted before they started", tasks=len(covered))
            self._on_change()
        if current is None or current.ended.done() or current.task.seq > cleared:
            return
        started = any(
            info.id == current.task.id and info.started for info in self._speech.segments()
        )
        finished = self._speech.clear(lambda info: info.id == current.task.id)
        if started:
            self._drop_taken_audio()  # audio already taken for the next frames is dropped too
            flush = asyncio.get_running_loop().create_task(self._flush_output())
            self._flushes.add(flush)
            flush.add_done_callback(self._flushes.discard)
        if current.synthesis is not None:
            current.synthesis.cancel()
        played = finished[0].position if finished else 0.0
        self._end(current, SpeechState.INTERRUPTED, played_s=played)

    def _end(self, current: _Speaking, state: SpeechState, *, played_s: float) -> None:
        if current.ended.done():
            return
        self._ledger.finished(current.task.id, state, _now(), self._in_spec(), current.error)
        log.info(
            "speak task finished",
            task=current.task.id,
            state=state.value,
            played_s=round(played_s, 3),
        )
        current.playing = False
        current.ended.set_result(None)
        self._on_change()

    def _in_spec(self) -> set[str]:
        return {task.id for task in self._spec.speech} if self._spec is not None else set()


def _now() -> datetime:
    return datetime.now(UTC)
