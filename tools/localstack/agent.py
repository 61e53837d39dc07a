"""The demo's voice agent: joins the room and makes the avatar say a sentence, again and again.

It drives the worker exactly as a LiveKit agent with an avatar plugin would (the LiveKit Agents
avatar protocol: one `lk.audio_stream` byte stream of int16 PCM per sentence, then it waits for
the worker's `lk.playback_finished` RPC). The worker's token names this agent in
`lk.publish_on_behalf`, so only it may drive the avatar.

The speech is real when Debian's `espeak-ng` is installed (tools/demo.sh installs it); without
it, the worker's own synthetic speech-like audio is sent instead (the log says which).
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import subprocess
import wave
from dataclasses import dataclass

import numpy as np
from livekit import rtc

from avatar_worker.audio.synthetic import speech_like

AGENT_IDENTITY = "demo-agent"
DEMO_SENTENCE = (
    "Hello! I am a Facecast avatar, made from a single photo, and I am speaking to you"
    " live from a LiveKit room on your own machine."
)
AUDIO_STREAM_TOPIC = "lk.audio_stream"
RPC_PLAYBACK_FINISHED = "lk.playback_finished"
SAMPLE_RATE = 24000
CHUNK_SAMPLES = 2400  # 100 ms per write, like an agent streaming TTS output
PAUSE_SECONDS = 1.0


@dataclass(frozen=True)
class Speech:
    pcm: bytes  # int16 little-endian mono
    sample_rate: int
    source: str  # "espeak-ng" or "synthetic"

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


def synthesise(text: str = DEMO_SENTENCE) -> Speech:
    """Real speech from espeak-ng when it is installed, else synthetic speech-like audio."""
    espeak = shutil.which("espeak-ng")
    if espeak is not None:
        done = subprocess.run(
            [espeak, "-v", "en-us", "-s", "150", "--stdout", text],
            capture_output=True,
            check=False,
            timeout=30,
        )
        if done.returncode == 0 and done.stdout:
            with wave.open(io.BytesIO(done.stdout)) as wav:
                rate = wav.getframerate()
                frames = wav.readframes(wav.getnframes())
                if wav.getsampwidth() == 2 and wav.getnchannels() == 1:
                    return Speech(frames, rate, "espeak-ng")
    pcm = speech_like(6.0, SAMPLE_RATE, seed=3)
    return Speech(np.asarray(pcm, dtype="<i2").tobytes(), SAMPLE_RATE, "synthetic")


async def speak_forever(room: rtc.Room, worker_identity: str, speech: Speech) -> None:
    """Send the sentence, wait until the worker has played it, pause, repeat."""
    finished: asyncio.Queue[str] = asyncio.Queue()

    async def on_finished(data: rtc.RpcInvocationData) -> str:
        finished.put_nowait(data.payload)
        return "ok"

    room.local_participant.register_rpc_method(RPC_PLAYBACK_FINISHED, on_finished)
    chunk = CHUNK_SAMPLES * 2 * speech.sample_rate // SAMPLE_RATE
    while True:
        await wait_for_participant(room, worker_identity)
        writer = await room.local_participant.stream_bytes(
            "demo-sentence",
            topic=AUDIO_STREAM_TOPIC,
            attributes={"sample_rate": str(speech.sample_rate), "num_channels": "1"},
            destination_identities=[worker_identity],
        )
        for start in range(0, len(speech.pcm), chunk):
            await writer.write(speech.pcm[start : start + chunk])
        await writer.aclose()
        # The worker plays in real time; a missing answer must not stop the demo.
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(finished.get(), timeout=speech.seconds + 15)
        await asyncio.sleep(PAUSE_SECONDS)  # a pause between sentences, not synchronisation


async def wait_for_participant(room: rtc.Room, identity: str) -> None:
    """Until `identity` is in the room (the worker may join after the agent)."""
    joined = asyncio.Event()

    def on_join(participant: rtc.RemoteParticipant) -> None:
        if participant.identity == identity:
            joined.set()

    room.on("participant_connected", on_join)
    try:
        while identity not in {p.identity for p in room.remote_participants.values()}:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(joined.wait(), timeout=5)
    finally:
        room.off("participant_connected", on_join)
