"""The frame clock with a batched renderer (the shape a GPU model will have), no room needed:
the media sources pace it in real time whether or not anything is published."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np
import pytest

from avatar_crds.enums import AspectRatio, Quality
from avatar_worker.audio.segments import PlaybackEvent, SegmentKind, SpeechBuffer
from avatar_worker.media.pipeline import Pipeline
from avatar_worker.media.publisher import MediaOutput
from avatar_worker.render.base import FrameRequest, Frames, Renderer
from avatar_worker.render.resolution import video_format
from worker_image.tests.support import tone, wait_until, within


class BatchedRenderer:
    """Renders `max_batch` frames per call, as a batched GPU model would."""

    def __init__(self, size: tuple[int, int], batch: int, lookahead: int = 0) -> None:
        self._size = size
        self._batch = batch
        self._lookahead = lookahead
        self.calls: list[list[FrameRequest]] = []

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def max_batch(self) -> int:
        return self._batch

    @property
    def lookahead_frames(self) -> int:
        return self._lookahead

    def render(self, batch: Sequence[FrameRequest]) -> Frames:
        self.calls.append(list(batch))
        width, height = self._size
        return np.zeros((len(batch), height, width, 4), dtype=np.uint8)

    def close(self) -> None:
        pass


def test_batched_renderer_gets_consecutive_frames_with_their_audio() -> None:
    async def scenario() -> None:
        fmt = video_format(Quality.MOCK, AspectRatio.SQUARE)
        output = MediaOutput(fmt)
        speech = SpeechBuffer(output.sample_rate, prebuffer_s=0)
        renderer = BatchedRenderer(fmt.size, batch=4)
        assert isinstance(renderer, Renderer)
        events: list[PlaybackEvent] = []

        def collect(new: Sequence[PlaybackEvent]) -> None:
            events.extend(new)

        pipeline = Pipeline(renderer, output, speech, on_events=collect)
        speech.open("s", SegmentKind.AGENT, sender="agent")
        speech.append("s", tone(0.2))  # five frames of speech
        speech.close("s")
        task = asyncio.create_task(pipeline.run())
        await wait_until(lambda: len(renderer.calls) >= 4, timeout=10, what="four batches")
        pipeline.stop()
        await within(task, timeout=5, what="the frame clock to stop")
        await output.aclose()

        assert all(len(call) == 4 for call in renderer.calls)
        indices = [request.index for call in renderer.calls for request in call]
        assert indices == list(range(len(indices)))
        speaking = [request.speaking for call in renderer.calls for request in call]
        assert speaking[:5] == [True] * 5
        assert not any(speaking[5:])
        assert [type(event).__name__ for event in events] == ["PlaybackStarted", "PlaybackFinished"]
        assert pipeline.stats.frames == 0  # nothing was published, so nothing is counted

    asyncio.run(scenario())


@pytest.mark.parametrize("batch", [1, 3])
def test_a_renderer_with_look_ahead_gets_the_audio_after_each_frame_undelayed(batch: int) -> None:
    """Frame k carries chunk k (what plays with it) and, as look-ahead, the audio that plays
    after it (chunks k+1 and k+2) as far as it is known: later frames of its batch, then what
    the speech buffer holds, so all of it while the speech lasts."""

    async def scenario() -> None:
        fmt = video_format(Quality.MOCK, AspectRatio.SQUARE)
        output = MediaOutput(fmt)
        spf = output.samples_per_frame
        speech = SpeechBuffer(output.sample_rate, prebuffer_s=0)
        renderer = BatchedRenderer(fmt.size, batch=batch, lookahead=2)
        pipeline = Pipeline(renderer, output, speech, on_events=lambda _: None)
        frames = 8
        speech.open("s", SegmentKind.AGENT, sender="agent")
        speech.append("s", np.repeat(np.arange(1, frames + 1, dtype=np.int16), spf))
        speech.close("s")
        task = asyncio.create_task(pipeline.run())
        await wait_until(
            lambda: sum(map(len, renderer.calls)) >= frames + 3, timeout=10, what="the speech"
        )
        pipeline.stop()
        await within(task, timeout=5, what="the frame clock to stop")
        await output.aclose()

        requests = [request for call in renderer.calls for request in call]
        played = np.concatenate([request.audio for request in requests])
        for k, request in enumerate(requests[: frames + 1]):
            assert request.audio.tolist() == [k + 1 if k < frames else 0] * spf, k
            after = played[(k + 1) * spf : (k + 3) * spf]
            if k + 2 < frames:  # both following chunks are speech: all of it is seen
                assert len(request.upcoming) == 2 * spf, k
            assert request.upcoming.tolist() == after[: len(request.upcoming)].tolist(), k

    asyncio.run(scenario())
