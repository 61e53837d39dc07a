"""Speak tasks end to end: the worker with the real espeak-ng in a real livekit-server room,
fed new versions of its session as its watch would deliver them; a viewer listens and watches.
"""

from __future__ import annotations

import asyncio
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import numpy.typing as npt
import pytest

from avatar_crds.enums import AudioSource, EndReason
from avatar_crds.session import EndingSoon
from avatar_worker.session_messages import SESSION_TOPIC
from testbed.livekit_server import LiveKitServer
from worker_image.tests.speak_support import (
    DataListener,
    fed_worker,
    last_report,
    report_states,
    speak_task,
    with_ending_soon,
    with_speech,
)
from worker_image.tests.support import (
    Subscriber,
    mint_token,
    session_resource,
    wait_until,
    window_rms,
    write_worker_files,
)

pytestmark = pytest.mark.livekit
WORKER = "facecast-worker"
SPEECH_RMS = 0.02  # of full scale, over 20 ms: speech energy (espeak-ng speaks at ~0.1-0.3)
SENTENCE = "Hello there. I am the avatar, and I am speaking a sentence for you."
LONG_TEXT = " ".join(
    [
        "Good morning, and welcome to the support line.",
        "I can help you with your order, your invoice or your delivery.",
        "Please tell me your order number when you are ready.",
        "It starts with two letters and has eight digits.",
        "You will find it in the confirmation email we sent you.",
    ]
)


def speech_seconds(viewer: Subscriber, since: float = 0.0) -> float:
    return float((window_rms(viewer.audio_since(since), 960) > SPEECH_RMS).sum() * 0.02)


def chunk_rms(samples: npt.NDArray[np.int16]) -> float:
    return float(np.sqrt(np.mean((samples / 32768.0) ** 2))) if len(samples) else 0.0


@pytest.mark.parametrize("audio_source", [AudioSource.DATA_STREAM, AudioSource.TRACK])
def test_a_task_is_spoken_lip_synced_and_reported(
    livekit_server: LiveKitServer, tmp_path: Path, audio_source: AudioSource
) -> None:
    room = f"speak-{audio_source.value}"

    async def scenario() -> None:
        session = session_resource(url=livekit_server.url, room=room, audio_source=audio_source)
        files = write_worker_files(tmp_path, session, mint_token(livekit_server, WORKER, room))
        viewer = Subscriber()
        await viewer.join(livekit_server, room)
        try:
            async with fed_worker(files) as (_, source):
                await wait_until(lambda: len(viewer.stamps()) >= 10, timeout=20, what="frames")
                assert viewer.audio_track_at is not None
                assert speech_seconds(viewer) == 0
                task = speak_task(1, SENTENCE)
                asked = time.monotonic()
                source.feed(with_speech(session, [task]))
                await wait_until(
                    lambda: (last_report(files.statuses(), task.id) or {}).get("state") == "done",
                    timeout=30,
                    what="the task to be done",
                )
                heard = speech_seconds(viewer, asked)
                print(f"\nspeak: {heard:.2f} s of speech energy at the viewer")
                assert heard >= 1.5
                speaking = [
                    stamp for at, stamp in viewer.stamps() if at >= asked and stamp.speaking
                ]
                assert len(speaking) >= 25  # the mouth moved for at least a second of it
                assert max(stamp.level for stamp in speaking) >= 3
            statuses = files.statuses()
            assert report_states(statuses, task.id) == ["speaking", "done"]
            report = last_report(statuses, task.id)
            assert report is not None
            assert report["startedAt"] <= report["finishedAt"]
            assert "message" not in report
            assert statuses[-1]["lastAudioAt"] >= report["startedAt"]
        finally:
            await viewer.leave()

    asyncio.run(scenario())


def test_two_tasks_in_order_and_ending_soon_relayed_once(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "speak-two"

    async def scenario() -> None:
        session = session_resource(url=livekit_server.url, room=room)
        files = write_worker_files(tmp_path, session, mint_token(livekit_server, WORKER, room))
        viewer = Subscriber()
        messages = DataListener(viewer.room)
        await viewer.join(livekit_server, room)
        try:
            async with fed_worker(files) as (worker, source):
                await within_frames(viewer)
                first, second = speak_task(1, "This is the first one."), speak_task(2, "Second.")
                source.feed(with_speech(session, [second, first]))
                await wait_until(
                    lambda: all(
                        (last_report(files.statuses(), t.id) or {}).get("state") == "done"
                        for t in (first, second)
                    ),
                    timeout=30,
                    what="both tasks to be done",
                )

                cutoff = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)
                warned = with_ending_soon(
                    session, EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=cutoff)
                )
                source.feed(warned)
                source.feed(warned)  # the same warning seen again (a resync): not repeated
                later = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=cutoff + timedelta(minutes=1))
                source.feed(with_ending_soon(session, later))
                await wait_until(
                    lambda: len(messages.on_topic(SESSION_TOPIC)) >= 2,
                    timeout=10,
                    what="two ending_soon messages",
                )
                assert worker.messages.sent == 2
            statuses = files.statuses()
            one, two = last_report(statuses, first.id), last_report(statuses, second.id)
            assert one is not None
            assert two is not None
            assert one["finishedAt"] <= two["startedAt"]  # in seq order, one at a time
            assert messages.on_topic(SESSION_TOPIC) == [
                {"type": "ending_soon", "reason": "idle_timeout", "at": "2026-01-01T12:00:00Z"},
                {"type": "ending_soon", "reason": "idle_timeout", "at": "2026-01-01T12:01:00Z"},
            ]
        finally:
            await viewer.leave()

    asyncio.run(scenario())


def test_an_interrupt_cuts_the_task_within_200_ms(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "speak-interrupt"

    async def scenario() -> None:
        session = session_resource(url=livekit_server.url, room=room)
        files = write_worker_files(tmp_path, session, mint_token(livekit_server, WORKER, room))
        viewer = Subscriber()
        await viewer.join(livekit_server, room)
        try:
            async with fed_worker(files) as (worker, source):
                await within_frames(viewer)
                long, queued = speak_task(1, LONG_TEXT), speak_task(2, "Never said.")
                source.feed(with_speech(session, [long, queued]))
                await wait_until(
                    lambda: speech_seconds(viewer) >= 1.0, timeout=30, what="speech to be heard"
                )
                cleared_at = time.monotonic()
                source.feed(with_speech(session, [long, queued], cleared_through=2))
                await wait_until(
                    lambda: (
                        any(a.at > cleared_at + 0.6 for a in viewer.audio)
                        and any(at > cleared_at + 0.6 for at, _ in viewer.stamps())
                    ),
                    timeout=10,
                    what="audio and video after the interrupt",
                )
                loud_after = [
                    a.at
                    for a in viewer.audio
                    if a.at >= cleared_at and chunk_rms(a.samples) > SPEECH_RMS
                ]
                stop_ms = (max(loud_after) - cleared_at) * 1000 if loud_after else 0.0
                moving = [at for at, s in viewer.stamps() if at >= cleared_at and s.speaking]
                still_ms = (max(moving) - cleared_at) * 1000 if moving else 0.0
                print(
                    f"\ninterrupt -> speech stopped at the viewer after {stop_ms:.0f} ms,"
                    f" mouth closed after {still_ms:.0f} ms"
                )
                assert stop_ms < 200
                assert still_ms < 200
                assert speech_seconds(viewer, cleared_at + 0.3) == 0

                # Speaking again after an interrupt works normally.
                again = speak_task(3, "Back again.")
                source.feed(with_speech(session, [long, queued, again], cleared_through=2))
                await wait_until(
                    lambda: (last_report(files.statuses(), again.id) or {}).get("state") == "done",
                    timeout=30,
                    what="the next task to be done",
                )
                assert worker.speaker is not None
            statuses = files.statuses()
            cut, never = last_report(statuses, long.id), last_report(statuses, queued.id)
            assert cut is not None
            assert never is not None
            assert report_states(statuses, long.id) == ["speaking", "interrupted"]
            assert cut["finishedAt"] >= cut["startedAt"]
            assert never["state"] == "interrupted"
            assert "startedAt" not in never  # it never started
        finally:
            await viewer.leave()

    asyncio.run(scenario())


def test_a_voice_this_worker_cannot_speak_fails_the_task(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "speak-unavailable"

    async def scenario() -> None:
        session = session_resource(url=livekit_server.url, room=room)
        files = write_worker_files(tmp_path, session, mint_token(livekit_server, WORKER, room))
        async with fed_worker(files) as (_, source):
            from avatar_crds.speech import Voice

            task = speak_task(1, "Hello.").model_copy(update={"voice": Voice(id="openai:alloy")})
            source.feed(with_speech(session, [task]))
            await wait_until(
                lambda: (last_report(files.statuses(), task.id) or {}).get("state") == "failed",
                timeout=20,
                what="the task to fail",
            )
        report = last_report(files.statuses(), task.id)
        assert report is not None
        assert "openai:alloy" in report["message"]
        assert "startedAt" not in report

    asyncio.run(scenario())


async def within_frames(viewer: Subscriber) -> None:
    await wait_until(lambda: len(viewer.stamps()) >= 10, timeout=20, what="frames")
