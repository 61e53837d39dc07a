"""espeak-ng as a livekit-agents TTS: offline speech, so the example needs no speech service.

Debian's `espeak-ng` (tools/demo.sh installs it), run by the worker's own offline engine
(`avatar_worker.tts.espeak`, in this workspace), speaks each sentence; the agent's session splits
its replies into sentences for a non-streaming TTS like this one.
"""

from __future__ import annotations

from typing import Never

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts, utils

from avatar_worker.tts.espeak import (
    NORMAL_WORDS_PER_MINUTE,
    SAMPLE_RATE,
    find_executable,
    synthesise,
)


class EspeakTTS(tts.TTS[Never]):  # no events of its own
    def __init__(self, *, voice: str = "en-us", words_per_minute: int = 160) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=SAMPLE_RATE,
            num_channels=1,
        )
        self.executable = find_executable()  # fails at once, naming the package, if missing
        self.voice = voice
        self.words_per_minute = words_per_minute

    @property
    def model(self) -> str:
        return "espeak-ng"

    @property
    def provider(self) -> str:
        return "espeak-ng"

    def synthesize(
        self, text: str, *, conn_options: APIConnectOptions = DEFAULT_API_CONNECT_OPTIONS
    ) -> tts.ChunkedStream:
        return _EspeakStream(tts=self, input_text=text, conn_options=conn_options)


class _EspeakStream(tts.ChunkedStream):
    def __init__(self, *, tts: EspeakTTS, input_text: str, conn_options: APIConnectOptions):
        super().__init__(tts=tts, input_text=input_text, conn_options=conn_options)
        self._espeak = tts

    async def _run(self, output_emitter: tts.AudioEmitter) -> None:
        # The worker's offline engine runs espeak-ng (and stops it if the agent is interrupted).
        chunk = await synthesise(
            self._input_text,
            voice=self._espeak.voice,
            speed=self._espeak.words_per_minute / NORMAL_WORDS_PER_MINUTE,
            executable=self._espeak.executable,
        )
        output_emitter.initialize(
            request_id=utils.shortuuid("espeak_"),
            sample_rate=chunk.sample_rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(chunk.pcm)
        output_emitter.flush()
