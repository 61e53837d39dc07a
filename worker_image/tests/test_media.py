"""What a room participant sees and hears of the worker, against the real livekit-server:
idle frames from the start, A/V offset and first-frame latency (mock), the lite mouth following
the audio, track and synthetic audio inputs, staying in the room through a reconnect."""

from __future__ import annotations

import asyncio
import statistics
import time
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest
from livekit import api, rtc
from skimage import color

from avatar_crds.enums import AspectRatio, AudioSource, Quality, VideoCodec
from avatar_worker.render.mouth import JAW_DROP
from avatar_worker.render.portrait import FaceGeometry, fit_transform
from avatar_worker.render.resolution import resolution
from avatar_worker.worker import EXIT_OK
from testbed.livekit_server import LiveKitServer
from worker_image.tests.astronaut import ASTRONAUT_FACE
from worker_image.tests.support import (
    SAMPLE_RATE,
    AgentPeer,
    Subscriber,
    mint_token,
    running_worker,
    session_resource,
    silence,
    speak,
    tone,
    wait_until,
    window_rms,
    within,
    write_worker_files,
)

pytestmark = pytest.mark.livekit
WORKER = "facecast-worker"


def audio_onsets(viewer: Subscriber, threshold: float = 0.2, quiet_s: float = 0.2) -> list[float]:
    """Arrival time of each sample where the received audio jumps from quiet to loud."""
    onsets: list[float] = []
    quiet_run = 0
    for chunk in viewer.audio:
        samples = np.abs(chunk.samples.astype(np.int32)) / 32768.0
        for i, value in enumerate(samples):
            if value > threshold:
                if quiet_run >= quiet_s * SAMPLE_RATE:
                    onsets.append(chunk.at - (len(samples) - i) / SAMPLE_RATE)
                quiet_run = 0
            elif value < 0.02:
                quiet_run += 1
    return onsets


def test_idle_frames_first_then_speech_with_measured_av_offset(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "mock-av"
    bursts = 5

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path,
            session_resource(url=livekit_server.url, room=room),
            mint_token(livekit_server, WORKER, room),
        )
        viewer, agent = Subscriber(), AgentPeer()
        await viewer.join(livekit_server, room)
        await agent.join(livekit_server, room)
        try:
            started = time.monotonic()
            async with running_worker(files) as worker:
                await wait_until(lambda: viewer.stamps(), timeout=20, what="a first frame")
                first_at, first = viewer.stamps()[0]
                output = agent.output()
                await wait_until(
                    lambda: len(viewer.stamps()) >= 25, timeout=20, what="1 s of video"
                )
                idle = viewer.stamps()
                assert not any(stamp.speaking for _, stamp in idle)
                assert not viewer.audio or window_rms(viewer.audio_since(0), 480).max() < 0.01

                # 0.4 s tone + 0.6 s silence, five times: onsets fall on frame boundaries.
                # Streamed at real time, as a streaming TTS would (a 5 s burst pushed at once
                # makes this single test process, on two cores, jitter enough to grow the
                # subscriber's audio jitter buffer, which then dominates the measurement).
                burst = np.concatenate([tone(0.4, freq=880), silence(0.6)])
                await speak(output, np.tile(burst, bursts), realtime=True)
                await within(output.wait_for_playout(), timeout=20, what="playout")
                await wait_until(
                    lambda: len(audio_onsets(viewer)) >= bursts,
                    timeout=10,
                    what="every burst heard",
                )
                assert worker.pipeline is not None
                assert worker.output is not None
                pushed = dict(worker.pipeline.stats.pushed)
                skew = worker.output.mean_skew_ms
                published_at = worker.pipeline.stats.first_frame_monotonic
                assert published_at is not None

            stamps = viewer.stamps()
            numbers = [stamp.frame for _, stamp in stamps]
            assert numbers == sorted(numbers)  # frame numbers decode, in order
            decoded = len(stamps) / len(viewer.video)
            by_number = {stamp.frame: (at, stamp) for at, stamp in stamps}
            rising = [
                n
                for n, (_, stamp) in sorted(by_number.items())
                if stamp.speaking and n - 1 in by_number and not by_number[n - 1][1].speaking
            ]
            assert len(rising) == bursts, (
                "".join("S" if s.speaking else "." for _, (_, s) in sorted(by_number.items())),
                sorted(by_number)[:3],
                len(by_number),
                rising,
            )
            assert all(25 <= gap <= 26 for gap in np.diff(rising))  # 1.0 s apart, as sent
            onsets = audio_onsets(viewer)[:bursts]
            offsets, video_latency, audio_latency = [], [], []
            for n, onset in zip(rising, onsets, strict=True):
                video_at = by_number[n][0]
                offsets.append((video_at - onset) * 1000)
                if n in pushed:
                    video_latency.append((video_at - pushed[n]) * 1000)
                    audio_latency.append((onset - pushed[n]) * 1000)
            print(
                "\nworker start -> first frame published:"
                f" {(published_at - started) * 1000:.0f} ms, received by the subscriber:"
                f" {(first_at - started) * 1000:.0f} ms"
                f" (frame #{first.frame}); frames decoded: {decoded:.1%}"
                f"\nA/V offset at the subscriber (video minus audio), ms: "
                f"{', '.join(f'{o:+.0f}' for o in offsets)}; mean {statistics.mean(offsets):+.0f}"
                f"\nlatency from push, video ms: {', '.join(f'{v:.0f}' for v in video_latency)}"
                f"\nlatency from push, audio ms: {', '.join(f'{a:.0f}' for a in audio_latency)}"
                f"\nsend-side skew in the worker (video minus audio): {skew:+.1f} ms"
            )
            statuses = files.statuses()
            assert statuses[-1]["frames"] > 0
            assert statuses[-1]["billableSeconds"] > 0
        finally:
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())


@pytest.mark.parametrize("codec", [VideoCodec.H264, VideoCodec.VP8])
@pytest.mark.parametrize("aspect", [AspectRatio.PORTRAIT])
def test_codec_and_aspect_reach_the_subscriber(
    livekit_server: LiveKitServer, tmp_path: Path, codec: VideoCodec, aspect: AspectRatio
) -> None:
    room = f"codec-{codec.value}"

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path,
            session_resource(url=livekit_server.url, room=room, codec=codec, aspect=aspect),
            mint_token(livekit_server, WORKER, room),
        )
        viewer = Subscriber()
        await viewer.join(livekit_server, room)
        try:
            async with running_worker(files):
                await wait_until(lambda: len(viewer.stamps()) >= 10, timeout=20, what="frames")
                publication = viewer.video_publication()
                assert publication.mime_type.lower() == f"video/{codec.value}"
                frame = viewer.video[-1]
                assert (frame.width, frame.height) == resolution(Quality.MOCK, aspect)
        finally:
            await viewer.leave()

    asyncio.run(scenario())


def _mouth_box(size: tuple[int, int]) -> tuple[slice, slice]:
    """Where the lite renderer draws the astronaut's mouth in the output frame."""
    face = FaceGeometry.from_face(ASTRONAUT_FACE)
    scale, dx, dy = fit_transform((512, 512), face, size)
    fitted = face.transformed(scale, dx, dy)
    mcx, mcy = fitted.mouth_center
    width = fitted.mouth_width
    drop = JAW_DROP * fitted.eye_distance
    return (
        slice(int(mcy - 0.1 * width), int(mcy + drop + 0.25 * width)),
        slice(int(mcx - 0.5 * width), int(mcx + 0.5 * width)),
    )


def test_lite_mouth_follows_the_audio_energy(livekit_server: LiveKitServer, tmp_path: Path) -> None:
    room = "lite-mouth"
    size = resolution(Quality.LITE, AspectRatio.LANDSCAPE)
    mouth = _mouth_box(size)

    def darkness(frame: npt.NDArray[np.uint8]) -> float:
        if frame.shape[1] != size[0]:
            return float("nan")
        grey = color.rgb2gray(frame[mouth][..., :3]) * 255
        return float((grey < 70).mean())

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path,
            session_resource(url=livekit_server.url, room=room, quality=Quality.LITE),
            mint_token(livekit_server, WORKER, room),
        )
        viewer, agent = Subscriber(analyse=darkness), AgentPeer()
        await viewer.join(livekit_server, room)
        await agent.join(livekit_server, room)
        try:
            async with running_worker(files):
                output = agent.output()
                await wait_until(lambda: len(viewer.video) >= 25, timeout=20, what="idle frames")
                speech_from = time.monotonic()
                # Syllable-like loudness: a 600 Hz voice whose envelope swells 1.5 times a second.
                t = np.arange(int(4.0 * SAMPLE_RATE)) / SAMPLE_RATE
                envelope = np.abs(np.sin(np.pi * 1.5 * t)) ** 2
                voice = (np.sin(2 * np.pi * 600 * t) * envelope * 0.6 * 32767).astype(np.int16)
                await speak(output, voice)
                await within(output.wait_for_playout(), timeout=20, what="playout")
                await wait_until(
                    lambda: (
                        viewer.video[-1].at > time.monotonic() - 0.1
                        and viewer.audio[-1].at - speech_from > 5.0
                    ),
                    timeout=10,
                    what="the tail of the speech",
                )
            idle = [f.value for f in viewer.video if f.at < speech_from and not np.isnan(f.value)]
            frames = [f for f in viewer.video if f.at >= speech_from and not np.isnan(f.value)]
            # Audio loudness at each frame's arrival (40 ms window ending there).
            audio = [
                (a.at, float(np.sqrt(np.mean((a.samples / 32768.0) ** 2)))) for a in viewer.audio
            ]
            times = np.array([at for at, _ in audio])
            levels = np.array([level for _, level in audio])
            paired = []
            for frame in frames:
                window = (times > frame.at - 0.04) & (times <= frame.at)
                if window.any():
                    paired.append((frame.value, float(levels[window].mean())))
            mouth_open, loudness = np.array(paired).T
            r = float(np.corrcoef(mouth_open, loudness)[0, 1])
            print(
                f"\nlite: mouth darkness vs audio RMS over {len(paired)} received frames:"
                f" r = {r:.2f};"
                f" idle darkness max {max(idle):.3f}, speaking darkness max {mouth_open.max():.3f}"
            )
            assert r > 0.5
            assert max(idle) < 0.02  # silence: closed mouth
            quiet = mouth_open[loudness < 0.005]
            assert len(quiet)
            assert np.median(quiet) < 0.02
            assert mouth_open.max() > 0.1
        finally:
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())


def test_track_audio_drives_the_avatar(livekit_server: LiveKitServer, tmp_path: Path) -> None:
    room = "track-input"

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path,
            session_resource(
                url=livekit_server.url,
                room=room,
                audio_source=AudioSource.TRACK,
                subscribe_to="speaker",
            ),
            mint_token(livekit_server, WORKER, room),
        )
        viewer = Subscriber()
        speaker = rtc.Room()
        await viewer.join(livekit_server, room)
        await speaker.connect(livekit_server.url, mint_token(livekit_server, "speaker", room))
        source = rtc.AudioSource(SAMPLE_RATE, 1)
        track = rtc.LocalAudioTrack.create_audio_track("mic", source)
        await speaker.local_participant.publish_track(
            track, rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
        )
        try:
            async with running_worker(files) as worker:
                assert worker is not None
                await wait_until(lambda: len(viewer.stamps()) >= 10, timeout=20, what="frames")
                await wait_until(
                    lambda: (
                        worker.track_input is not None and worker.track_input.subscribed.is_set()
                    ),
                    timeout=10,
                    what="the worker to subscribe to the speaker",
                )
                # Speak in real time (the source paces capture_frame): silence, tone, silence.
                for piece in (silence(0.5), tone(1.0, freq=500), silence(0.5)):
                    for start in range(0, len(piece), 480):
                        block = piece[start : start + 480]
                        await source.capture_frame(
                            rtc.AudioFrame(block.tobytes(), SAMPLE_RATE, 1, len(block))
                        )
                await wait_until(
                    lambda: (window_rms(viewer.audio_since(0), 480) > 0.05).sum() >= 60,
                    timeout=10,
                    what="the worker to say what the speaker said",
                )
                await wait_until(
                    lambda: sum(stamp.speaking for _, stamp in viewer.stamps()) >= 15,
                    timeout=10,
                    what="speaking frames",
                )
                assert worker.last_audio_at is not None
        finally:
            await speaker.disconnect()
            await viewer.leave()

    asyncio.run(scenario())


def test_synthetic_audio_when_nobody_speaks(livekit_server: LiveKitServer, tmp_path: Path) -> None:
    room = "synthetic"

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path,
            session_resource(url=livekit_server.url, room=room, synthetic=True),
            mint_token(livekit_server, WORKER, room),
        )
        viewer = Subscriber()
        await viewer.join(livekit_server, room)
        try:
            # The rule is "nobody spoke within 10 s"; 1 s here keeps the test short.
            async with running_worker(files, synthetic_after_s=1.0) as worker:
                await wait_until(lambda: len(viewer.stamps()) >= 5, timeout=20, what="frames")
                # Frames that arrived before the synthetic voice could start were rendered
                # before it too, so they are idle. (On a loaded machine the viewer may see its
                # first frames only after that moment; the order, not the timing, is checked.)
                assert worker.pipeline is not None
                onset = worker.pipeline.started_at + 1.0
                assert not any(stamp.speaking for at, stamp in viewer.stamps() if at < onset)
                await wait_until(
                    lambda: (window_rms(viewer.audio_since(0), 480) > 0.02).sum() >= 50,
                    timeout=15,
                    what="synthetic speech",
                )
                await wait_until(
                    lambda: sum(stamp.speaking for _, stamp in viewer.stamps()) >= 10,
                    timeout=10,
                    what="speaking frames",
                )
                assert worker.pipeline is not None
                assert worker.pipeline.stats.synthetic_frames > 0
                assert worker.last_audio_at is None  # generated audio is not received audio
        finally:
            await viewer.leave()

    asyncio.run(scenario())


def test_stays_in_the_room_through_reconnects_and_leaves_when_removed(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "reconnect"

    async def scenario() -> None:
        files = write_worker_files(
            tmp_path,
            session_resource(url=livekit_server.url, room=room),
            mint_token(livekit_server, WORKER, room),
        )
        viewer = Subscriber()
        await viewer.join(livekit_server, room)
        try:
            async with running_worker(files) as worker:
                await wait_until(lambda: worker.ready.is_set(), timeout=20, what="the worker")
                assert worker.transport is not None
                transport = worker.transport
                # The SDK resumes / reconnects by itself for the first two; after the third
                # (the server asks the participant to leave), the room reports a disconnect
                # and the worker joins again with a new connection and republishes.
                for scenario_kind in (
                    rtc.SimulateScenarioKind.SIMULATE_SIGNAL_RECONNECT,
                    rtc.SimulateScenarioKind.SIMULATE_FULL_RECONNECT,
                    rtc.SimulateScenarioKind.SIMULATE_SERVER_LEAVE,
                ):
                    await wait_until(lambda: transport.connected, timeout=20, what="connected")
                    await transport.room.simulate_scenario(scenario_kind)
                    mark = time.monotonic()
                    await wait_until(
                        lambda: sum(1 for at, _ in viewer.stamps() if at > mark) >= 25,  # noqa: B023
                        timeout=30,
                        what=f"frames after {rtc.SimulateScenarioKind.Name(scenario_kind)}",
                    )
                assert transport.rejoins == 1
                numbers = [stamp.frame for _, stamp in viewer.stamps()]
                assert numbers == sorted(numbers)

                # Removing the participant ends the session: the worker leaves and exits 0.
                async with api.LiveKitAPI(
                    livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
                ) as lk:
                    await lk.room.remove_participant(
                        api.RoomParticipantIdentity(room=room, identity=WORKER)
                    )
                await wait_until(lambda: worker.exit_code is not None, timeout=20, what="exit")
                assert worker.exit_code == EXIT_OK
        finally:
            await viewer.leave()

    asyncio.run(scenario())
