"""A stand-in for an OpenAI-compatible speech server (`POST /v1/audio/speech`), on 127.0.0.1.

A stand-in because no such server can run here: OpenAI's is remote, and the self-hosted ones
need model weights. Its bytes are still real speech: it speaks with the worker's espeak-ng
engine, resampled to 24 kHz as OpenAI's `pcm` format is, and streams each sentence as soon as
it is synthesised. It checks what a real server checks (the bearer key, the voice, the body's
fields) and can be told to fail (a status) or to stall (before its first byte)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from aiohttp import web

from avatar_worker.audio.pcm import Resampler
from avatar_worker.tts.espeak import EspeakEngine
from avatar_worker.tts.openai_compatible import OPENAI_PCM_SAMPLE_RATE

# OpenAI's voice names, spoken here by espeak-ng voices.
VOICES = {"alloy": "en-us", "echo": "en-gb", "nova": "en-us"}


@dataclass
class SpeechStandin:
    api_key: str
    base_url: str = ""  # set once listening: http://127.0.0.1:<port>/v1
    fail_with: int | None = None
    stall_s: float = 0.0
    requests: list[dict[str, Any]] = field(default_factory=list)

    async def handle(self, request: web.Request) -> web.StreamResponse:
        if request.headers.get("Authorization") != f"Bearer {self.api_key}":
            # Like OpenAI's: the refusal quotes the key it was sent, which a client must not repeat.
            sent = request.headers.get("Authorization", "")
            return _error(401, f"Incorrect API key provided: {sent}", "invalid_api_key")
        body = await request.json()
        self.requests.append(body)
        if self.fail_with is not None:
            return _error(self.fail_with, "the stand-in was told to fail", "server_error")
        voice = VOICES.get(body.get("voice", ""))
        if voice is None or body.get("response_format") != "pcm" or not body.get("input"):
            return _error(400, "voice, input and response_format=pcm are required", "bad_request")
        if self.stall_s:
            await asyncio.sleep(self.stall_s)  # the behaviour under test: a server that hangs
        reply = web.StreamResponse(headers={"Content-Type": "audio/pcm"})
        reply.enable_chunked_encoding()
        await reply.prepare(request)
        engine = EspeakEngine()
        resampler: Resampler | None = None
        async for chunk in engine.stream(body["input"], voice=voice, speed=body.get("speed", 1.0)):
            resampler = resampler or Resampler(chunk.sample_rate, OPENAI_PCM_SAMPLE_RATE)
            samples = np.frombuffer(chunk.pcm, dtype="<i2")
            await reply.write(resampler.push(samples).astype("<i2").tobytes())
        if resampler is not None:
            await reply.write(resampler.flush().astype("<i2").tobytes())
        await reply.write_eof()
        return reply


def _error(status: int, message: str, code: str) -> web.Response:
    return web.json_response({"error": {"message": message, "code": code}}, status=status)


@asynccontextmanager
async def speech_standin(api_key: str) -> AsyncIterator[SpeechStandin]:
    """The stand-in listening on a free port of 127.0.0.1, stopped on exit."""
    standin = SpeechStandin(api_key)
    app = web.Application()
    app.router.add_post("/v1/audio/speech", standin.handle)
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    standin.base_url = f"http://127.0.0.1:{port}/v1"
    try:
        yield standin
    finally:
        await runner.cleanup()
