"""A standard-tier session through the real livekit-server, on a tiny random MuseTalk written to
a temporary model directory: the worker joins and publishes video at the tier's size, frames
and speech reach a subscriber, and the A/V offset is measured stamp-free (printed), as the
audio onset against the moment the generated face starts to change (a random model moves no
mouth, but its face changes with the audio it hears and stays still in silence)."""

from __future__ import annotations

import asyncio
import collections
import itertools
import statistics
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from avatar_crds.contract import ENV_MODEL_DIR
from avatar_crds.enums import AspectRatio, Quality
from avatar_worker.neural.face import face_crop
from avatar_worker.render.lite import LiteRenderer
from avatar_worker.render.resolution import FPS, resolution
from testbed.livekit_server import LiveKitServer
from worker_image.tests.neural_support import astronaut, write_tiny
from worker_image.tests.support import (
    AgentPeer,
    Subscriber,
    mint_token,
    running_worker,
    session_resource,
    silence,
    speak,
    tone,
    wait_until,
    within,
    write_worker_files,
)
from worker_image.tests.test_media import WORKER, audio_onsets

pytestmark = pytest.mark.livekit
SIZE = resolution(Quality.STANDARD, AspectRatio.LANDSCAPE)
LOOKAHEAD_MS = 80  # the model reads 2 frames of audio after each frame (`lookahead_frames`)
FRAME_MS = 1000 / FPS


def face_core(size: tuple[int, int]) -> tuple[slice, slice]:
    """The middle of the face crop, where the generated face covers the frame entirely."""
    crop = face_crop(LiteRenderer(astronaut(), size).face, size)
    quarter = crop.side // 4
    return (
        slice(crop.y + quarter, crop.y + crop.side - quarter, 2),
        slice(crop.x + quarter, crop.x + crop.side - quarter, 2),
    )


def face_change_onsets(
    frames: list[tuple[float, npt.NDArray[np.float32]]], after: float, bursts: int
) -> list[float]:
    """Arrival time of each frame where the face starts changing after holding still: its
    difference from the frame before jumps well above the still face's (codec noise)."""
    changes = [
        (at, float(np.abs(face - before).mean()))
        for (_, before), (at, face) in itertools.pairwise(frames)
        if at >= after
    ]
    still = statistics.median(change for _, change in changes)
    threshold = max(4 * still, 1.0)
    onsets: list[float] = []
    quiet = 0
    for at, change in changes:
        if change > threshold and quiet >= FPS // 2:
            onsets.append(at)
        quiet = quiet + 1 if change <= threshold else 0
    return onsets[:bursts]


def test_a_standard_session_publishes_its_tier_size_with_measured_av_offset(
    livekit_server: LiveKitServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(ENV_MODEL_DIR, str(write_tiny(tmp_path / "models")))
    room = "standard-av"
    bursts = 3
    core = face_core(SIZE)

    def analyse(frame: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32] | None:
        if (frame.shape[1], frame.shape[0]) != SIZE:
            return None
        grey: npt.NDArray[np.float32] = frame[core][..., :3].mean(axis=2, dtype=np.float32)
        return grey

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path / "worker",
            session_resource(url=livekit_server.url, room=room, quality=Quality.STANDARD),
            mint_token(livekit_server, WORKER, room),
        )
        viewer, agent = Subscriber(analyse=analyse), AgentPeer()
        await viewer.join(livekit_server, room)
        await agent.join(livekit_server, room)
        try:
            async with running_worker(files) as worker:
                output = agent.output()
                # Past the tiny model's 1 s of history, a silent face holds still.
                await wait_until(lambda: len(viewer.video) >= 50, timeout=30, what="idle frames")
                speech_from = time.monotonic()
                burst = np.concatenate([tone(0.4, freq=880), silence(1.6)])
                await speak(output, np.tile(burst, bursts), realtime=True)
                await within(output.wait_for_playout(), timeout=30, what="playout")
                await wait_until(
                    lambda: len(audio_onsets(viewer)) >= bursts,
                    timeout=10,
                    what="every burst heard",
                )
                assert worker.pipeline is not None
                rendered = worker.pipeline.stats.rendered
                publication = viewer.video_publication()
                published = (publication.width, publication.height)
            assert rendered > 0
            assert published == SIZE
            # What arrives is the tier's size, but for a rare odd frame out of WebRTC's decoder
            # (one CI run received an 8x8 one; the worker only ever captures frames of the
            # tier's size).
            sizes = collections.Counter((f.width, f.height) for f in viewer.video)
            assert sizes.most_common(1)[0][0] == SIZE, sizes
            assert sizes[SIZE] >= 0.97 * len(viewer.video), sizes
            frames = [(f.at, f.value) for f in viewer.video if f.value is not None]
            video = face_change_onsets(frames, after=speech_from - 0.5, bursts=bursts)
            audio = audio_onsets(viewer)[:bursts]
            assert len(frames) >= 50 + bursts * 2 * FPS * 0.5  # video kept flowing
            offsets = [min(((v - a) * 1000 for a in audio), key=abs) for v in video]
            measured = ", ".join(f"{o:+.0f}" for o in offsets) or "none"
            # Printed, not asserted: on shared CPU cores most passes miss the 35 ms budget and
            # the face is held, so when it changes says little about A/V (which the frame
            # clock keeps paired regardless); on a GPU every pass is in time.
            print(
                f"\nstandard (tiny model): {len(frames)} frames at {SIZE[0]}x{SIZE[1]};"
                f" face-change onsets {len(video)} of {bursts} bursts; face change minus audio"
                f" onset (nearest), ms: {measured} (the face may"
                f" move up to {LOOKAHEAD_MS} ms early: it hears that much ahead)"
            )
        finally:
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())
