"""An engine that calls any server with OpenAI's speech endpoint, `POST {base_url}/audio/speech`
(`base_url` as OpenAI's clients take it, e.g. `https://api.openai.com/v1`), so a platform team
can plug in its own TTS. It asks for `response_format: pcm` (16-bit mono at the server's rate,
24 kHz for OpenAI's) and yields the body as it arrives.

The API key is read from a file or an environment variable on every request (a mounted Secret
can rotate) and is sent only in the Authorization header: never logged, never in an error,
and redacted from any error text the server sends back."""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Final

import aiohttp

from avatar_crds.redact import redact
from avatar_worker.audio.pcm import ByteAligner
from avatar_worker.tts.engine import (
    AudioChunk,
    TtsAuthError,
    TtsError,
    TtsRateLimitedError,
    TtsRequestError,
    TtsServerError,
    TtsTimeoutError,
    TtsUnavailableError,
)

SPEECH_PATH: Final = "audio/speech"
OPENAI_PCM_SAMPLE_RATE: Final = 24000
_ERROR_EXCERPT_CHARS: Final = 200
_READ_BYTES: Final = 8192


@dataclass(frozen=True)
class OpenAISpeechConfig:
    """Where the server is and how to ask it. Holds where the key is, never the key itself."""

    base_url: str
    model: str = "tts-1"
    api_key_file: str | None = None
    api_key_env: str | None = None
    sample_rate: int = OPENAI_PCM_SAMPLE_RATE
    connect_timeout_s: float = 5.0
    # No byte for this long, before the first audio or between two chunks, is a timeout.
    read_timeout_s: float = 10.0

    @property
    def url(self) -> str:
        return f"{self.base_url.rstrip('/')}/{SPEECH_PATH}"

    def api_key(self) -> str | None:
        """The key, read now; None when none is configured (a server that needs none)."""
        if self.api_key_file is not None:
            try:
                with open(self.api_key_file, encoding="utf-8") as file:
                    return file.read().strip()
            except OSError as error:
                raise TtsAuthError(
                    f"cannot read the TTS API key file {self.api_key_file}: {error.strerror}"
                ) from None
        if self.api_key_env is not None:
            key = os.environ.get(self.api_key_env)
            if not key:
                raise TtsAuthError(f"the TTS API key variable {self.api_key_env} is not set")
            return key
        return None


class OpenAICompatibleEngine:
    name = "openai-compatible"

    def __init__(self, config: OpenAISpeechConfig) -> None:
        self.config = config
        self._session: aiohttp.ClientSession | None = None

    def _client(self) -> aiohttp.ClientSession:
        # Made on first use, inside the running loop that will use it.
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(
                    total=None,  # a long text streams for as long as it speaks
                    connect=self.config.connect_timeout_s,
                    sock_read=self.config.read_timeout_s,
                )
            )
        return self._session

    async def stream(
        self, text: str, *, voice: str, speed: float = 1.0
    ) -> AsyncIterator[AudioChunk]:
        if not text.strip():
            return
        key = self.config.api_key()
        headers = {} if key is None else {"Authorization": f"Bearer {key}"}
        body = {
            "model": self.config.model,
            "voice": voice,
            "input": text,
            "response_format": "pcm",
            "speed": speed,
        }
        known = () if key is None else (key,)
        try:
            async with self._client().post(self.config.url, json=body, headers=headers) as reply:
                if reply.status != 200:
                    raise await _refusal(reply, known)
                aligner = ByteAligner(2)  # a network read can split a sample in two
                async for data in reply.content.iter_chunked(_READ_BYTES):
                    pcm = aligner.push(data)
                    if pcm:
                        yield AudioChunk(pcm, self.config.sample_rate)
        except TtsError:
            raise
        except TimeoutError:
            raise TtsTimeoutError(
                f"no audio from {self.config.url} within {self.config.read_timeout_s} s"
            ) from None
        except aiohttp.ClientError as error:
            raise TtsUnavailableError(
                f"{self.config.url} is unreachable: {redact(type(error).__name__)}"
            ) from None

    async def aclose(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None


async def _refusal(reply: aiohttp.ClientResponse, known: tuple[str, ...]) -> TtsError:
    status = reply.status
    if status in (401, 403):
        # Some servers quote part of the key they were sent: their text is not repeated.
        return TtsAuthError(f"the TTS server refused the API key ({status})", status=status)
    try:
        excerpt = (await asyncio.wait_for(reply.text(errors="replace"), 5.0))[:_ERROR_EXCERPT_CHARS]
    except (TimeoutError, aiohttp.ClientError):
        excerpt = ""
    message = f"the TTS server answered {status}"
    if excerpt.strip():
        message += f": {redact(excerpt.strip(), known)}"
    if status == 429:
        return TtsRateLimitedError(message, status=status)
    if status >= 500:
        return TtsServerError(message, status=status)
    return TtsRequestError(message, status=status)
