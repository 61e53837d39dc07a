"""The frame clock with a batched renderer (the shape a GPU model will have), no room needed:
the media sources pace it in real time whether or not anything is published."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import numpy as np

from avatar_crds.enums import AspectRatio, Quality
from avatar_worker.audio.segments import PlaybackEvent, SegmentKind, SpeechBuffer
from avatar_worker.media.pipeline import Pipeline
from avatar_worker.media.publisher import MediaOutput
from avatar_worker.render.base import FrameRequest, Frames, Renderer
from avatar_worker.render.resolution import video_format
from worker_image.tests.support import tone, wait_until, within


class BatchedRenderer:
    """Renders `max_batch` frames per call, as a batched GPU model would."""

    def __init__(self, size: tuple[int, int], batch: int) -> None:
        self._size = size
        self._batch = batch
        self.calls: list[list[FrameRequest]] = []

    @property
    def size(self) -> tuple[int, int]:
        return self._size

    @property
    def max_batch(self) -> int:
        return self._batch

    @property
    def lookahead_frames(self) -> int:
        return 0

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
