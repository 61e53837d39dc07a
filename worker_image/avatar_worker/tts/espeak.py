"""The offline engine: Debian's espeak-ng, one process per sentence, so the first sentence plays
while the next is synthesised. Robotic but intelligible in ~100 languages, and it needs nothing
but the package (`apt-get install espeak-ng`).

`synthesise` speaks one piece of text whole; anything else in the repository that wants
espeak-ng speech can call it rather than run espeak-ng itself."""

from __future__ import annotations

import asyncio
import contextlib
import io
import shutil
import wave
from collections.abc import AsyncIterator
from typing import Final

from avatar_worker.tts.engine import (
    AudioChunk,
    TtsError,
    TtsRequestError,
    TtsUnavailableError,
)
from avatar_worker.tts.sentences import split_sentences

EXECUTABLE: Final = "espeak-ng"
NORMAL_WORDS_PER_MINUTE: Final = 175
"""espeak-ng's own default rate: speed 1.0."""
SAMPLE_RATE: Final = 22050
_UNKNOWN_VOICE: Final = b"voice does not exist"


def find_executable() -> str:
    executable = shutil.which(EXECUTABLE)
    if executable is None:
        raise TtsUnavailableError("espeak-ng is not installed (Debian: apt-get install espeak-ng)")
    return executable


def words_per_minute(speed: float) -> int:
    return round(NORMAL_WORDS_PER_MINUTE * speed)


async def synthesise(
    text: str, *, voice: str, speed: float = 1.0, executable: str | None = None
) -> AudioChunk:
    """`text` spoken whole by espeak-ng's `voice` (its `-v` name) at `speed`."""
    # The text goes on stdin, so a sentence that starts with "-" is never read as an option.
    process = await asyncio.create_subprocess_exec(
        executable or find_executable(),
        "-v",
        voice,
        "-s",
        str(words_per_minute(speed)),
        "--stdout",
        stdin=asyncio.subprocess.PIPE,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
    )
    try:
        wav_bytes, errors = await process.communicate(text.encode())
    finally:
        if process.returncode is None:  # cancelled mid-sentence (an interruption)
            with contextlib.suppress(ProcessLookupError):
                process.kill()
            await process.wait()
    if _UNKNOWN_VOICE in errors:
        raise TtsRequestError(f"espeak-ng has no voice {voice!r}")
    if process.returncode != 0 or not wav_bytes:
        detail = errors.decode(errors="replace").strip()[-200:]
        raise TtsError(f"espeak-ng failed (exit {process.returncode}): {detail}")
    return _read_wav(wav_bytes)


def _read_wav(wav_bytes: bytes) -> AudioChunk:
    # espeak-ng writes the header before it knows the length (a huge data size); `wave`
    # reads the frames that are actually there.
    with wave.open(io.BytesIO(wav_bytes)) as wav:
        if wav.getsampwidth() != 2 or wav.getnchannels() != 1:
            raise TtsError("espeak-ng wrote audio that is not 16-bit mono")
        return AudioChunk(wav.readframes(wav.getnframes()), wav.getframerate())


class EspeakEngine:
    name = "espeak-ng"

    def __init__(self, executable: str | None = None) -> None:
        self.executable = executable or find_executable()

    async def stream(
        self, text: str, *, voice: str, speed: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        for sentence in split_sentences(text):
            chunk = await synthesise(sentence, voice=voice, speed=speed, executable=self.executable)
            if chunk.pcm:
                yield chunk

    async def aclose(self) -> None:
        """Nothing to release: each sentence's process has ended when its audio is yielded."""
