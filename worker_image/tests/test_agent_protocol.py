"""The LiveKit Agents avatar protocol against the real livekit-server, driven by livekit-agents'
own DataStreamAudioOutput (what every avatar plugin uses to talk to its avatar worker)."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import numpy as np
import pytest

from avatar_worker.audio.agent_protocol import (
    ATTRIBUTE_PUBLISH_ON_BEHALF,
    RPC_CLEAR_BUFFER,
    RPC_PLAYBACK_FINISHED,
    RPC_PLAYBACK_STARTED,
)
from testbed.livekit_server import LiveKitServer
from worker_image.tests.support import (
    AgentPeer,
    Subscriber,
    mint_token,
    running_worker,
    session_resource,
    speak,
    tone,
    wait_until,
    window_rms,
    within,
    write_worker_files,
)

pytestmark = pytest.mark.livekit
WORKER = "facecast-worker"
LOUD = 0.05  # RMS (of full scale) that counts as hearing the tone


def loud_seconds(viewer: Subscriber, since: float = 0.0) -> float:
    audio = viewer.audio_since(since)
    return float((window_rms(audio, 480) > LOUD).sum() * 0.01)


def test_agent_speech_plays_and_playback_is_reported(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "agent-speech"

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
            async with running_worker(files):
                output = agent.output()  # waits for the worker's video track, as plugins do
                await wait_until(lambda: len(viewer.stamps()) >= 10, timeout=20, what="idle frames")
                assert viewer.audio_track_at is not None
                assert viewer.video_track_at is not None
                assert not any(stamp.speaking for _, stamp in viewer.stamps())
                assert loud_seconds(viewer) == 0

                # 24 kHz, as many TTS engines produce: the worker resamples to 48 kHz.
                await speak(output, tone(1.5, rate=24000), sample_rate=24000)
                event = await within(output.wait_for_playout(), timeout=15, what="playout")
                assert event.interrupted is False
                assert event.playback_position == pytest.approx(1.5, abs=0.05)

                await wait_until(lambda: loud_seconds(viewer) >= 1.3, timeout=10, what="the tone")
                assert sum(stamp.speaking for _, stamp in viewer.stamps()) >= 30

                started = agent.methods(RPC_PLAYBACK_STARTED)
                finished = agent.methods(RPC_PLAYBACK_FINISHED)
                assert [r.caller for r in started + finished] == [WORKER, WORKER]
                assert started[0].payload == ""
                assert started[0].at <= finished[0].at
                payload = json.loads(finished[0].payload)
                assert set(payload) == {"playback_position", "interrupted"}
                assert payload["interrupted"] is False
                assert payload["playback_position"] == pytest.approx(1.5, abs=0.05)

                # A second segment is a second stream, reported on its own.
                await speak(output, tone(0.4, freq=660))
                second = await within(output.wait_for_playout(), timeout=15, what="playout")
                assert second.playback_position == pytest.approx(0.4, abs=0.05)
                assert len(agent.methods(RPC_PLAYBACK_FINISHED)) == 2
            statuses = files.statuses()
            assert statuses[-1]["lastAudioAt"] >= statuses[-1]["firstFrameAt"]
        finally:
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())


def test_clear_buffer_interrupts_and_reports_interrupted(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "agent-interrupt"

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
            async with running_worker(files):
                # No fallback timer: any playback_finished must really come from the worker.
                output = agent.output(clear_buffer_timeout=None)
                await speak(output, tone(8.0))  # pushed much faster than it plays
                await wait_until(lambda: loud_seconds(viewer) >= 1.0, timeout=20, what="speech")
                cleared_at = time.monotonic()
                output.clear_buffer()
                event = await within(output.wait_for_playout(), timeout=10, what="playout")
                assert event.interrupted is True
                assert 0.9 < event.playback_position < 6.0
                finished = agent.methods(RPC_PLAYBACK_FINISHED)
                assert len(finished) == 1
                assert json.loads(finished[0].payload)["interrupted"] is True

                # Speech stops at the subscriber: measure when the tone was last heard.
                await wait_until(
                    lambda: any(a.at > cleared_at + 0.5 for a in viewer.audio),
                    timeout=10,
                    what="audio after the interruption",
                )
                loud_after = [
                    a.at
                    for a in viewer.audio
                    if a.at >= cleared_at and np.sqrt(np.mean((a.samples / 32768.0) ** 2)) > LOUD
                ]
                stop_ms = (max(loud_after) - cleared_at) * 1000 if loud_after else 0.0
                print(f"\nclear_buffer -> speech stopped at the subscriber after {stop_ms:.0f} ms")
                print(
                    "clear_buffer -> lk.playback_finished after"
                    f" {(finished[0].at - cleared_at) * 1000:.0f} ms"
                )
                assert loud_seconds(viewer) < 8.0 - 2.0  # most of the segment was never played

                # Speaking again after an interruption works normally.
                await speak(output, tone(0.5, freq=330))
                again = await within(output.wait_for_playout(), timeout=15, what="playout")
                assert again.interrupted is False
                assert again.playback_position == pytest.approx(0.5, abs=0.05)
        finally:
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())


def test_a_report_for_an_agent_that_has_left_is_dropped_not_retried(
    livekit_server: LiveKitServer, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    room = "agent-leaves"
    logged: list[str] = []

    def log_says(text: str) -> bool:
        captured = capsys.readouterr()
        logged.append(captured.out + captured.err)
        return text in "".join(logged)

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
            async with running_worker(files):
                output = agent.output()
                await speak(output, tone(2.0))
                await wait_until(lambda: loud_seconds(viewer) >= 0.3, timeout=20, what="speech")
                await agent.leave()  # mid-segment: its playback_finished has nobody to go to
                await wait_until(
                    lambda: log_says("the agent has left; dropping a notification"),
                    timeout=15,
                    what="the report for the departed agent dropped",
                )
            assert not log_says("notification failed")
        finally:
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())


def test_publish_on_behalf_names_the_only_sender(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    room = "agent-on-behalf"

    async def scenario() -> None:
        token = mint_token(
            livekit_server, WORKER, room, attributes={ATTRIBUTE_PUBLISH_ON_BEHALF: "agent"}
        )
        files = write_worker_files(
            tmp_path, session_resource(url=livekit_server.url, room=room), token
        )
        agent, intruder = AgentPeer("agent"), AgentPeer("intruder")
        await agent.join(livekit_server, room)
        await intruder.join(livekit_server, room)
        try:
            async with running_worker(files) as worker:
                intruding = intruder.output()
                await speak(intruding, tone(0.5))
                reply = await intruder.room.local_participant.perform_rpc(
                    destination_identity=WORKER, method=RPC_CLEAR_BUFFER, payload=""
                )
                assert reply == "reject"

                output = agent.output()
                await speak(output, tone(0.5))
                event = await within(output.wait_for_playout(), timeout=15, what="playout")
                assert event.interrupted is False
                assert worker.agent_input is not None
                assert worker.agent_input.expected_sender() == "agent"
                assert worker.agent_input.segments_received == 1  # the intruder's was ignored
                assert intruder.rpcs == []
                assert len(agent.methods(RPC_PLAYBACK_FINISHED)) == 1
        finally:
            await agent.leave()
            await intruder.leave()

    asyncio.run(scenario())
