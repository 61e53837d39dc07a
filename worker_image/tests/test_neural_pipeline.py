"""The standard and pro tiers end to end on a tiny random MuseTalk saved and loaded in the
published format: frames come out at the tier's size, the generated face is pasted exactly
through its mask over lite's frame, sessions batched together render what they render alone,
and a late pass holds the last face instead of stalling the clock."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from avatar_crds.enums import AspectRatio, Quality
from avatar_worker.neural.batch import BatchRenderer
from avatar_worker.neural.compose import paste, resize_face
from avatar_worker.neural.model import MuseTalk
from avatar_worker.render import build_renderer
from avatar_worker.render.base import FrameRequest, Frames, Renderer
from avatar_worker.render.lite import LiteRenderer
from avatar_worker.render.resolution import video_format
from testbed.wait import wait_for
from worker_image.tests.neural_support import astronaut, speech_requests, write_tiny

SIZE = (320, 240)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return write_tiny(tmp_path_factory.mktemp("tiny"))


@pytest.fixture(scope="module")
def model(model_dir: Path) -> MuseTalk:
    return MuseTalk.load(model_dir)


@pytest.fixture
def batch(model: MuseTalk) -> Iterator[BatchRenderer]:
    renderer = BatchRenderer(model, budget_s=None, gather_s=0.2)
    yield renderer
    renderer.close()


def lite_frames(requests: list[FrameRequest], size: tuple[int, int]) -> Frames:
    """What lite draws for these frames with the mouth closed (blinks and sway included)."""
    lite = LiteRenderer(astronaut(), size)
    return lite.render([FrameRequest(index=r.index, time_s=r.time_s) for r in requests])


@pytest.mark.parametrize("quality", [Quality.STANDARD, Quality.PRO])
def test_the_tier_renders_through_build_renderer(quality: Quality, model_dir: Path) -> None:
    fmt = video_format(quality, AspectRatio.LANDSCAPE)
    renderer = build_renderer(quality, fmt, astronaut, models=model_dir)
    try:
        assert isinstance(renderer, Renderer)
        assert renderer.size == fmt.size
        assert renderer.lookahead_frames == 2
        frames = renderer.render(speech_requests(2))
        assert frames.shape == (2, fmt.height, fmt.width, 4)
        assert (frames[..., 3] == 255).all()
    finally:
        renderer.close()


def test_the_face_is_pasted_exactly_through_its_mask(batch: BatchRenderer) -> None:
    handle = batch.register(astronaut(), SIZE)
    requests = speech_requests(6)
    frames = np.concatenate([handle.render([r]) for r in requests])
    lite = lite_frames(requests, SIZE)
    session = handle.session
    crop = session.crop
    assert crop.mask.max() == 1.0
    assert crop.mask.min() == 0.0
    for i, request in enumerate(requests):
        pose = session.lite.pose_at(FrameRequest(index=0, time_s=request.time_s))
        dx, dy = (round(v) for v in pose.shift)
        weight = np.zeros(frames.shape[1:3], dtype=np.float32)
        weight[crop.y + dy : crop.y + dy + crop.side, crop.x + dx : crop.x + dx + crop.side] = (
            crop.mask
        )
        outside = weight == 0
        assert (frames[i][outside] == lite[i][outside]).all()  # lite's frame, untouched
        inside = weight == 1
        # Under a full weight the pixel is the generated face's: rebuild it from the face.
        expected = lite[i].copy()
        face = resize_face(session_faces(batch, request), crop.side)
        paste(expected, face, crop.mask, crop.x + dx, crop.y + dy)
        assert (frames[i][inside] == expected[inside]).all()
        assert (frames[i] == expected).all()
    changed = (frames[..., :3] != lite[..., :3]).any(axis=-1)
    assert changed.any(), "the generated face changed nothing"


def session_faces(batch: BatchRenderer, request: FrameRequest) -> npt.NDArray[np.uint8]:
    """The model's face for `request`, computed directly from a session that heard the same
    audio."""
    fresh = batch.register(astronaut(), SIZE)
    try:
        history = speech_requests(request.index + 1)
        fresh.session.hear(history)
        job_latents = batch.model.face_latents(fresh.session.model_face)
        plan = fresh.session.plan([request])
        model = batch.model
        features = model.features([plan.samples])
        faces = model.generate(job_latents[None], model.prompts(features[0], plan.positions))
        face: npt.NDArray[np.uint8] = faces[0]
        return face
    finally:
        fresh.close()


def test_the_log_mel_is_the_whisper_feature_extractors(model: MuseTalk) -> None:
    """The model computes whisper's log-mel on its own device; it must equal the extractor's."""
    rng = np.random.default_rng(0)
    samples = model.mel.n_samples
    speech_then_silence = np.zeros(samples, dtype=np.float32)
    speech_then_silence[: samples // 4] = rng.standard_normal(samples // 4) * 0.3
    short = (rng.standard_normal(samples // 3) * 0.2).astype(np.float32)  # padded with silence
    windows = [(rng.standard_normal(samples) * 0.1).astype(np.float32), speech_then_silence, short]
    expected = model.mel(windows, sampling_rate=model.mel.sampling_rate, return_tensors="np")
    got = model.log_mel(windows).cpu().numpy()
    assert got.shape == expected.input_features.shape
    np.testing.assert_allclose(got, expected.input_features, atol=1e-4)


def test_the_mouth_follows_the_audio(batch: BatchRenderer) -> None:
    a = batch.register(astronaut(), SIZE)
    b = batch.register(astronaut(), SIZE)
    loud = speech_requests(6, seed=1)
    quiet = [FrameRequest(index=r.index, time_s=r.time_s, audio=r.audio // 50) for r in loud]
    fa = np.concatenate([a.render([r]) for r in loud])
    fb = np.concatenate([b.render([r]) for r in quiet])
    assert not np.array_equal(fa[-1], fb[-1])


def render_alone(model: MuseTalk, seeds: list[int], frames: int) -> list[Frames]:
    out = []
    for seed in seeds:
        alone = BatchRenderer(model, budget_s=None, gather_s=0.0)
        try:
            handle = alone.register(astronaut(), SIZE)
            requests = speech_requests(frames, seed=seed)
            out.append(np.concatenate([handle.render([r]) for r in requests]))
            assert alone.stats.sessions_per_pass == [1] * frames
        finally:
            alone.close()
    return out


def test_sessions_batched_together_render_what_they_render_alone(batch: BatchRenderer) -> None:
    seeds, frames = [1, 2, 3], 6
    handles = [batch.register(astronaut(), SIZE) for _ in seeds]
    together: list[Frames | None] = [None] * len(seeds)

    def clock(i: int) -> None:
        requests = speech_requests(frames, seed=seeds[i])
        together[i] = np.concatenate([handles[i].render([r]) for r in requests])

    threads = [threading.Thread(target=clock, args=(i,)) for i in range(len(seeds))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert max(batch.stats.sessions_per_pass) == len(seeds), batch.stats.sessions_per_pass
    alone = render_alone(batch.model, seeds, frames)
    for mine, reference in zip(together, alone, strict=True):
        assert mine is not None
        # float32 kernels may round a batch of 3 differently from a batch of 1 in the last bit
        diff = np.abs(mine.astype(np.int16) - reference.astype(np.int16))
        assert diff.max() <= 1
        assert (diff > 0).mean() < 1e-3


def test_a_late_pass_holds_the_last_face_and_keeps_time(model: MuseTalk) -> None:
    slow = BatchRenderer(model, budget_s=0.0, gather_s=0.0)
    try:
        handle = slow.register(astronaut(), SIZE)
        requests = speech_requests(3)
        first = handle.render(requests[:1])
        lite = lite_frames(requests[:1], SIZE)
        # Nothing generated yet: lite's own closed mouth, on time.
        assert np.array_equal(first, lite)
        assert slow.stats.late_calls == 1
        # The late pass still finishes; its face is held by the next late frame.
        wait_for(lambda: slow.stats.passes >= 1, timeout=30, description="the late pass")
        held = handle.render(requests[1:2])
        assert slow.stats.late_calls == 2
        assert not np.array_equal(held, lite_frames(requests[1:2], SIZE))
    finally:
        slow.close()
