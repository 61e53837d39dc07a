"""espeak-ng as a livekit-agents TTS: offline speech, so the example needs no speech service.

Debian's `espeak-ng` (tools/demo.sh installs it) writes a 22.05 kHz mono WAV per sentence; the
agent's session splits its replies into sentences for a non-streaming TTS like this one.
"""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import wave
from typing import Never

from livekit.agents import DEFAULT_API_CONNECT_OPTIONS, APIConnectOptions, tts, utils

ESPEAK_SAMPLE_RATE = 22050


class EspeakTTS(tts.TTS[Never]):  # no events of its own
    def __init__(self, *, voice: str = "en-us", words_per_minute: int = 160) -> None:
        super().__init__(
            capabilities=tts.TTSCapabilities(streaming=False),
            sample_rate=ESPEAK_SAMPLE_RATE,
            num_channels=1,
        )
        executable = shutil.which("espeak-ng")
        if executable is None:
            raise RuntimeError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
        self.executable = executable
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
        # The text goes on stdin, so a sentence that starts with "-" is never read as an option.
        process = await asyncio.create_subprocess_exec(
            self._espeak.executable,
            "-v",
            self._espeak.voice,
            "-s",
            str(self._espeak.words_per_minute),
            "--stdout",
            stdin=asyncio.subprocess.PIPE,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        try:
            wav_bytes, errors = await process.communicate(self._input_text.encode())
        finally:
            if process.returncode is None:  # cancelled mid-sentence (an interruption)
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                await process.wait()
        if process.returncode != 0 or not wav_bytes:
            raise RuntimeError(f"espeak-ng failed ({process.returncode}): {errors.decode()[-200:]}")
        with wave.open(io.BytesIO(wav_bytes)) as wav:
            rate, pcm = wav.getframerate(), wav.readframes(wav.getnframes())
        output_emitter.initialize(
            request_id=utils.shortuuid("espeak_"),
            sample_rate=rate,
            num_channels=1,
            mime_type="audio/pcm",
        )
        output_emitter.push(pcm)
        output_emitter.flush()
