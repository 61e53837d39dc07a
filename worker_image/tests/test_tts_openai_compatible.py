"""The OpenAI-compatible engine against a local server with the same endpoint (a stand-in: no
such server can run here, see testbed/openai_speech_standin.py); its audio is real speech."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import TypeVar

import pytest

from avatar_worker.tts.engine import (
    AudioChunk,
    TtsAuthError,
    TtsRateLimitedError,
    TtsRequestError,
    TtsServerError,
    TtsTimeoutError,
    TtsUnavailableError,
)
from avatar_worker.tts.openai_compatible import (
    OPENAI_PCM_SAMPLE_RATE,
    OpenAICompatibleEngine,
    OpenAISpeechConfig,
)
from testbed.openai_speech_standin import SpeechStandin, speech_standin
from worker_image.tests.tts_audio import collect, speech_seconds

KEY = "sk-standin-0123456789abcdef"
TEXT = (
    "Thank you for calling. Your parcel left our warehouse this morning."
    " It should arrive tomorrow before noon. Is there anything else I can do for you?"
)
T = TypeVar("T")


def with_server(
    scenario: Callable[[SpeechStandin, OpenAICompatibleEngine], Awaitable[T]],
    tmp_path: Path,
    read_timeout_s: float = 10.0,
) -> T:
    """Runs `scenario` with the stand-in and an engine that reads the key from a file."""
    key_file = tmp_path / "api-key"
    key_file.write_text(KEY + "\n")

    async def run() -> T:
        async with speech_standin(KEY) as standin:
            engine = OpenAICompatibleEngine(
                OpenAISpeechConfig(
                    standin.base_url, api_key_file=str(key_file), read_timeout_s=read_timeout_s
                )
            )
            try:
                return await scenario(standin, engine)
            finally:
                await engine.aclose()

    return asyncio.run(run())


def test_speech_streams_as_the_server_sends_it(tmp_path: Path) -> None:
    async def scenario(
        standin: SpeechStandin, engine: OpenAICompatibleEngine
    ) -> tuple[float, float, list[AudioChunk]]:
        started = time.monotonic()
        first: float | None = None
        chunks = []
        async for chunk in engine.stream(TEXT, voice="alloy", speed=1.25):
            first = first if first is not None else time.monotonic() - started
            chunks.append(chunk)
        assert first is not None
        assert standin.requests == [
            {
                "model": "tts-1",
                "voice": "alloy",
                "input": TEXT,
                "response_format": "pcm",
                "speed": 1.25,
            }
        ]
        return first, time.monotonic() - started, chunks

    first, total, chunks = with_server(scenario, tmp_path)
    pcm = b"".join(chunk.pcm for chunk in chunks)
    seconds = len(pcm) / 2 / OPENAI_PCM_SAMPLE_RATE
    assert {chunk.sample_rate for chunk in chunks} == {OPENAI_PCM_SAMPLE_RATE}
    assert all(len(chunk.pcm) % 2 == 0 for chunk in chunks)  # whole samples only
    assert seconds > 4.0
    assert speech_seconds(pcm, OPENAI_PCM_SAMPLE_RATE) > 0.5 * seconds
    # The server sends four sentences one after the other; the first is here before the last.
    assert first < total / 2, (first, total)


def test_the_key_is_read_on_every_request(tmp_path: Path) -> None:
    async def scenario(standin: SpeechStandin, engine: OpenAICompatibleEngine) -> None:
        await collect(engine.stream("One.", voice="alloy"))
        standin.api_key = "sk-rotated-key-0000000000"
        with pytest.raises(TtsAuthError):
            await collect(engine.stream("Two.", voice="alloy"))
        (tmp_path / "api-key").write_text(standin.api_key)
        _, pcm = await collect(engine.stream("Three.", voice="alloy"))
        assert speech_seconds(pcm, OPENAI_PCM_SAMPLE_RATE) > 0.2

    with_server(scenario, tmp_path)


def test_a_refused_key_is_an_auth_error_that_does_not_repeat_it(tmp_path: Path) -> None:
    async def scenario(standin: SpeechStandin, engine: OpenAICompatibleEngine) -> None:
        standin.api_key = "sk-the-server-wants-another"
        await collect(engine.stream(TEXT, voice="alloy"))

    with pytest.raises(TtsAuthError) as refused:
        with_server(scenario, tmp_path)
    assert refused.value.status == 401
    assert not refused.value.retryable
    assert KEY not in str(refused.value)  # the stand-in's answer quotes it
    assert "standin" not in str(refused.value)


@pytest.mark.parametrize(
    ("status", "error"),
    [(500, TtsServerError), (503, TtsServerError), (429, TtsRateLimitedError)],
)
def test_server_failures_are_typed_and_retryable(
    tmp_path: Path, status: int, error: type[Exception]
) -> None:
    async def scenario(standin: SpeechStandin, engine: OpenAICompatibleEngine) -> None:
        standin.fail_with = status
        await collect(engine.stream(TEXT, voice="alloy"))

    with pytest.raises(error) as failed:
        with_server(scenario, tmp_path)
    assert getattr(failed.value, "status", None) == status
    assert getattr(failed.value, "retryable", False)
    assert "told to fail" in str(failed.value)  # the server's own words, for the operator


def test_an_unknown_voice_is_a_request_error(tmp_path: Path) -> None:
    async def scenario(_standin: SpeechStandin, engine: OpenAICompatibleEngine) -> None:
        await collect(engine.stream(TEXT, voice="no-such-voice"))

    with pytest.raises(TtsRequestError) as refused:
        with_server(scenario, tmp_path)
    assert refused.value.status == 400
    assert not refused.value.retryable


def test_a_server_that_stalls_is_a_timeout(tmp_path: Path) -> None:
    async def scenario(standin: SpeechStandin, engine: OpenAICompatibleEngine) -> float:
        standin.stall_s = 5.0
        started = time.monotonic()
        with pytest.raises(TtsTimeoutError):
            await collect(engine.stream(TEXT, voice="alloy"))
        return time.monotonic() - started

    waited = with_server(scenario, tmp_path, read_timeout_s=0.3)
    assert 0.3 <= waited < 3.0


def test_no_server_is_unavailable(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on once it is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    engine = OpenAICompatibleEngine(
        OpenAISpeechConfig(f"http://127.0.0.1:{port}/v1", api_key_env="FACECAST_TEST_UNUSED")
    )

    async def scenario() -> None:
        try:
            await collect(engine.stream(TEXT, voice="alloy"))
        finally:
            await engine.aclose()

    with pytest.MonkeyPatch.context() as env:
        env.setenv("FACECAST_TEST_UNUSED", KEY)
        with pytest.raises(TtsUnavailableError) as failed:
            asyncio.run(scenario())
    assert failed.value.retryable
    assert KEY not in str(failed.value)


def test_a_missing_key_is_an_auth_error_before_any_request(tmp_path: Path) -> None:
    missing_file = OpenAISpeechConfig("http://127.0.0.1:9/v1", api_key_file=str(tmp_path / "no"))
    with pytest.raises(TtsAuthError, match="cannot read the TTS API key file"):
        missing_file.api_key()
    unset = OpenAISpeechConfig("http://127.0.0.1:9/v1", api_key_env="FACECAST_TEST_NOT_SET")
    with pytest.MonkeyPatch.context() as env:
        env.delenv("FACECAST_TEST_NOT_SET", raising=False)
        with pytest.raises(TtsAuthError, match="FACECAST_TEST_NOT_SET is not set"):
            unset.api_key()
    assert OpenAISpeechConfig("http://127.0.0.1:9/v1").api_key() is None  # a server without keys
