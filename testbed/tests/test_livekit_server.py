"""livekit-server really relays data and audio between two SDK participants."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

import numpy as np
import pytest
from livekit import api, rtc

from testbed.livekit_server import LiveKitServer

pytestmark = pytest.mark.livekit

SAMPLE_RATE = 48000
FRAME_SAMPLES = SAMPLE_RATE // 100  # 10 ms frames, what WebRTC works in
TONE_HZ = 440.0
# Enough received audio for a clean FFT peak (bins of 1/0.2 s = 5 Hz).
ANALYSIS_SAMPLES = SAMPLE_RATE // 5
# Upper bound on how much tone the publisher sends before giving up.
MAX_PUBLISHED_FRAMES = 2000
STEP_TIMEOUT = 30.0
PAYLOAD = b"facecast says hello over a reliable data packet"
TOPIC = "facecast.test"


def token(server: LiveKitServer, room: str, identity: str) -> str:
    grants = api.VideoGrants(room_join=True, room=room)
    return (
        api.AccessToken(server.api_key, server.api_secret)
        .with_identity(identity)
        .with_grants(grants)
        .to_jwt()
    )


def tone_frame(index: int) -> rtc.AudioFrame:
    """Frame `index` of a continuous 440 Hz sine at half scale."""
    frame = rtc.AudioFrame.create(SAMPLE_RATE, 1, FRAME_SAMPLES)
    t = (np.arange(FRAME_SAMPLES) + index * FRAME_SAMPLES) / SAMPLE_RATE
    samples = np.frombuffer(frame.data, dtype=np.int16)
    # frame.data is a writable view of the frame's buffer.
    samples[:] = (np.sin(2 * np.pi * TONE_HZ * t) * 16000).astype(np.int16)
    return frame


def dominant_frequency(samples: np.ndarray) -> float:
    spectrum = np.abs(np.fft.rfft(samples * np.hanning(len(samples))))
    return float(np.fft.rfftfreq(len(samples), 1 / SAMPLE_RATE)[int(np.argmax(spectrum))])


@dataclass
class Receiver:
    """What the listening participant has seen, and events for each milestone."""

    data: list[rtc.DataPacket] = field(default_factory=list)
    got_data: asyncio.Event = field(default_factory=asyncio.Event)
    audio_track: asyncio.Future[rtc.Track] = field(
        default_factory=lambda: asyncio.get_running_loop().create_future()
    )

    def attach(self, room: rtc.Room) -> None:
        @room.on("data_received")
        def on_data(packet: rtc.DataPacket) -> None:
            self.data.append(packet)
            self.got_data.set()

        @room.on("track_subscribed")
        def on_track(
            track: rtc.Track,
            publication: rtc.RemoteTrackPublication,
            participant: rtc.RemoteParticipant,
        ) -> None:
            if track.kind == rtc.TrackKind.KIND_AUDIO and not self.audio_track.done():
                self.audio_track.set_result(track)


async def read_audible_samples(track: rtc.Track) -> np.ndarray:
    """Read frames until ANALYSIS_SAMPLES of non-silent audio have arrived.

    The first frames after subscribing are silence (jitter buffer filling), so
    only frames with real signal count.
    """
    stream = rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1)
    collected: list[np.ndarray] = []
    count = 0
    try:
        async for event in stream:
            samples = np.frombuffer(event.frame.data, dtype=np.int16).astype(np.float64)
            if np.sqrt(np.mean(samples**2)) > 1000:
                collected.append(samples)
                count += len(samples)
                if count >= ANALYSIS_SAMPLES:
                    break
    finally:
        await stream.aclose()
    return np.concatenate(collected)[:ANALYSIS_SAMPLES]


async def publish_tone(source: rtc.AudioSource, stop: asyncio.Event) -> None:
    # capture_frame waits while the source's buffer is full, which paces
    # this loop at real time; the frame cap bounds it if nobody stops it.
    for index in range(MAX_PUBLISHED_FRAMES):
        if stop.is_set():
            return
        await source.capture_frame(tone_frame(index))


async def exchange(server: LiveKitServer) -> tuple[list[rtc.DataPacket], np.ndarray]:
    room_name = "testenv-check"
    sender, listener = rtc.Room(), rtc.Room()
    received = Receiver()
    received.attach(listener)
    await listener.connect(server.url, token(server, room_name, "listener"))
    try:
        await sender.connect(server.url, token(server, room_name, "speaker"))
        try:
            source = rtc.AudioSource(SAMPLE_RATE, 1)
            track = rtc.LocalAudioTrack.create_audio_track("tone", source)
            options = rtc.TrackPublishOptions(source=rtc.TrackSource.SOURCE_MICROPHONE)
            await sender.local_participant.publish_track(track, options)
            stop = asyncio.Event()
            publisher = asyncio.create_task(publish_tone(source, stop))
            try:
                remote_track = await asyncio.wait_for(received.audio_track, STEP_TIMEOUT)
                samples = await asyncio.wait_for(read_audible_samples(remote_track), STEP_TIMEOUT)
                # The listener is subscribed, so it is certainly in the room:
                # a reliable packet sent now must arrive.
                await sender.local_participant.publish_data(PAYLOAD, reliable=True, topic=TOPIC)
                await asyncio.wait_for(received.got_data.wait(), STEP_TIMEOUT)
            finally:
                stop.set()
                await publisher
                await source.aclose()
        finally:
            await sender.disconnect()
    finally:
        await listener.disconnect()
    return received.data, samples


def test_participant_receives_data_packet_and_audio(livekit_server: LiveKitServer) -> None:
    packets, samples = asyncio.run(exchange(livekit_server))

    assert len(packets) == 1
    packet = packets[0]
    assert packet.data == PAYLOAD
    assert packet.topic == TOPIC
    assert packet.participant is not None
    assert packet.participant.identity == "speaker"

    assert len(samples) == ANALYSIS_SAMPLES
    # Opus is lossy, so compare what a listener hears: the pitch of the tone.
    assert dominant_frequency(samples) == pytest.approx(TONE_HZ, abs=10.0)
