"""The frame clock: every 40 ms, one frame's audio out of the speech buffer, one rendered frame,
both pushed together into the synchroniser, so frame N always plays with audio chunk N.

The loop is paced by the media sources themselves (the audio source accepts audio in real time,
the synchroniser releases video at 25 fps), so it runs at the output rate whether or not the
tracks are published, and idle frames flow from the first moment. Rendering runs in a worker
thread (`asyncio.to_thread`) so RPCs and streams are served while a frame is drawn.

A renderer with look-ahead (`lookahead_frames`, the standard tier's 80 ms of right context)
gets, with each frame, the audio that follows it: the batch's later frames, then what the
speech buffer holds beyond them (`SpeechBuffer.peek`). Nothing is delayed, so look-ahead adds no
latency and frame N still plays with chunk N (delaying both by 80 ms instead would add 80 ms
to every reply for the rare case below). While the sender keeps ahead of playback (TTS bursts
do) the look-ahead is whole; audio that arrives at real time is only what the buffer's
prebuffer holds ahead (40-80 ms), as is a live track's short backlog, and the model reads
silence after what has arrived.
"""

from __future__ import annotations

import asyncio
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime

import numpy as np
import numpy.typing as npt

from avatar_worker.audio.segments import Chunk, PlaybackEvent, SpeechBuffer
from avatar_worker.audio.synthetic import SyntheticPolicy, SyntheticVoice
from avatar_worker.logging import get_logger
from avatar_worker.media.publisher import MediaOutput
from avatar_worker.render.base import FrameRequest, Renderer
from avatar_worker.render.visemes import VisemeTracker, rms_dbfs

log = get_logger("avatar_worker.pipeline")

SPEAKING_DBFS = -45.0


@dataclass
class PipelineStats:
    frames: int = 0  # frames pushed while the tracks were published
    first_frame_at: datetime | None = None  # wall clock of the first such frame
    first_frame_monotonic: float | None = None
    speaking_frames: int = 0
    synthetic_frames: int = 0
    render_seconds: float = 0.0  # total time spent in the renderer
    rendered: int = 0  # every frame rendered, published or not
    # (frame index, time.monotonic() when pushed) of recent frames: latency measurements.
    pushed: deque[tuple[int, float]] = field(default_factory=lambda: deque(maxlen=3000))

    def billable_seconds(self, now_monotonic: float) -> float:
        if self.first_frame_monotonic is None:
            return 0.0
        return max(0.0, now_monotonic - self.first_frame_monotonic)


class Pipeline:
    def __init__(
        self,
        renderer: Renderer,
        output: MediaOutput,
        speech: SpeechBuffer,
        *,
        on_events: Callable[[Sequence[PlaybackEvent]], None],
        synthetic: SyntheticPolicy | None = None,
        first_input_at: Callable[[], float | None] = lambda: None,
    ) -> None:
        self._renderer = renderer
        self._output = output
        self._speech = speech
        self._on_events = on_events
        self._synthetic = synthetic
        self._voice = SyntheticVoice(output.sample_rate) if synthetic is not None else None
        self._first_input_at = first_input_at
        self._fps = output.format.fps
        self._tracker = VisemeTracker(self._fps)
        self._stopping = asyncio.Event()
        self._first_frame = asyncio.Event()
        self.started_at = time.monotonic()  # the synthetic-speech clock starts here
        self._epoch = 0
        self._tick = asyncio.Condition()
        self.stats = PipelineStats()

    def interrupted(self) -> None:
        """Audio taken before now belongs to interrupted speech: do not push it."""
        self._epoch += 1

    def stop(self) -> None:
        self._stopping.set()

    async def wait_first_frame(self) -> None:
        await self._first_frame.wait()

    async def wait_speech_idle(self) -> None:
        """Until every queued segment has been pushed out (checked after each frame)."""
        async with self._tick:
            await self._tick.wait_for(lambda: self._speech.idle)

    async def run(self) -> None:
        index = 0
        spf = self._output.samples_per_frame
        batch_size = max(1, self._renderer.max_batch)
        lookahead = self._renderer.lookahead_frames * spf
        while not self._stopping.is_set():
            epoch = self._epoch
            chunks = [self._speech.take(spf) for _ in range(batch_size)]
            requests = [self._request(index + i, chunk) for i, chunk in enumerate(chunks)]
            if lookahead:
                requests = with_upcoming(requests, self._speech.peek(lookahead), lookahead)
            started = time.perf_counter()
            frames = await asyncio.to_thread(self._renderer.render, requests)
            self.stats.render_seconds += time.perf_counter() - started
            self.stats.rendered += len(requests)
            for i, (chunk, request) in enumerate(zip(chunks, requests, strict=True)):
                pcm = request.audio
                if epoch != self._epoch and chunk.used:
                    pcm = np.zeros_like(pcm)  # cleared while rendering
                self.stats.pushed.append((request.index, time.monotonic()))
                await self._output.push(frames[i], pcm, request.index)
                if chunk.events:
                    self._on_events(chunk.events)
                self._count(request)
            index += batch_size
            async with self._tick:
                self._tick.notify_all()
        log.info("frame clock stopped", frames=self.stats.frames, rendered=self.stats.rendered)

    def _request(self, index: int, chunk: Chunk) -> FrameRequest:
        samples = chunk.samples
        synthetic = False
        if chunk.used == 0 and self._synthetic is not None and self._voice is not None:
            now = time.monotonic()
            if self._synthetic.active(now, self.started_at, self._first_input_at()):
                samples = self._voice.next(len(samples))
                synthetic = True
        mouth = self._tracker.update(samples, self._output.sample_rate)
        speaking = (chunk.used > 0 or synthetic) and rms_dbfs(samples) > SPEAKING_DBFS
        if synthetic:
            self.stats.synthetic_frames += 1
        return FrameRequest(
            index=index,
            time_s=index / self._fps,
            mouth=mouth,
            speaking=speaking,
            audio=samples,
        )

    def _count(self, request: FrameRequest) -> None:
        if not self._output.published.is_set():
            return
        if self.stats.first_frame_at is None:
            self.stats.first_frame_at = datetime.now(UTC)
            self.stats.first_frame_monotonic = time.monotonic()
            self._first_frame.set()
            log.info("first frame published", index=request.index)
        self.stats.frames += 1
        if request.speaking:
            self.stats.speaking_frames += 1


def with_upcoming(
    requests: Sequence[FrameRequest], ahead: npt.NDArray[np.int16], length: int
) -> list[FrameRequest]:
    """Each request with the `length` samples after its own audio: the later requests' audio,
    then `ahead` (what is buffered beyond the batch), as far as they go."""
    audio = np.concatenate([*(r.audio for r in requests), ahead])
    out, end = [], 0
    for request in requests:
        end += len(request.audio)
        out.append(replace(request, upcoming=audio[end : end + length].copy()))
    return out
