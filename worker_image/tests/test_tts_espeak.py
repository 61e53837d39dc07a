"""The offline engine: real espeak-ng, sentence by sentence."""

from __future__ import annotations

import asyncio
import shutil
import subprocess
import time

import pytest

from avatar_crds.voices import ESPEAK_VOICES
from avatar_worker.tts.engine import AudioChunk, TtsRequestError
from avatar_worker.tts.espeak import SAMPLE_RATE, EspeakEngine, synthesise
from worker_image.tests.tts_audio import collect, speech_seconds

SENTENCES = [
    "Good morning, and welcome to the support line.",
    "I can help you with your order, your invoice or your delivery.",
    "Please tell me your order number when you are ready.",
    "It starts with two letters and has eight digits.",
    "You will find it in the confirmation email we sent you.",
    "Take your time, I will wait.",
]


def test_the_first_sentence_arrives_before_the_whole_text_is_synthesised() -> None:
    async def scenario() -> tuple[float, float, list[AudioChunk]]:
        engine = EspeakEngine()
        started = time.monotonic()
        first: float | None = None
        chunks = []
        async for chunk in engine.stream(" ".join(SENTENCES), voice="en-us"):
            first = first if first is not None else time.monotonic() - started
            chunks.append(chunk)
        assert first is not None
        return first, time.monotonic() - started, chunks

    first, total, chunks = asyncio.run(scenario())
    assert len(chunks) == len(SENTENCES)  # one synthesis per sentence
    # A whole-text engine would deliver its first audio at about `total`; this one after
    # about a sixth of it.
    assert first < total / 2, (first, total)
    one_sentence = asyncio.run(synthesise(SENTENCES[0], voice="en-us"))
    assert chunks[0].pcm == one_sentence.pcm  # the first chunk is the first sentence alone


def test_the_audio_is_speech_at_the_requested_speed() -> None:
    text = " ".join(SENTENCES[:3])

    async def speak(speed: float) -> bytes:
        _, pcm = await collect(EspeakEngine().stream(text, voice="en-us", speed=speed))
        return pcm

    normal, fast = asyncio.run(speak(1.0)), asyncio.run(speak(2.0))
    seconds = len(normal) / 2 / SAMPLE_RATE
    words = len(text.split())
    assert 0.2 * words < seconds < 0.6 * words  # about 175 words per minute, with pauses
    assert speech_seconds(normal, SAMPLE_RATE) > 0.5 * seconds
    assert len(fast) < 0.65 * len(normal)
    assert speech_seconds(fast, SAMPLE_RATE) > 0.5 * len(fast) / 2 / SAMPLE_RATE


def test_nothing_to_say_is_no_audio() -> None:
    chunks, _ = asyncio.run(collect(EspeakEngine().stream("  \n ", voice="en-us")))
    assert chunks == []


def test_an_unknown_voice_is_a_typed_refusal() -> None:
    with pytest.raises(TtsRequestError, match="no voice 'xx-nope'"):
        asyncio.run(collect(EspeakEngine().stream("Hello.", voice="xx-nope")))


def test_text_starting_with_a_dash_is_spoken_not_read_as_an_option() -> None:
    chunk = asyncio.run(synthesise("-h is not an option here.", voice="en-us"))
    assert speech_seconds(chunk.pcm, chunk.sample_rate) > 0.5


def test_every_catalogue_voice_is_one_espeak_ng_has() -> None:
    executable = shutil.which("espeak-ng")
    assert executable is not None
    listing = subprocess.run(
        [executable, "--voices"], capture_output=True, text=True, check=True
    ).stdout
    installed = {line.split()[1] for line in listing.splitlines()[1:] if line.strip()}
    missing = [voice.engine_voice for voice in ESPEAK_VOICES if voice.engine_voice not in installed]
    assert missing == []

    async def speak_all() -> list[AudioChunk]:
        return [await synthesise("12345", voice=voice.engine_voice) for voice in ESPEAK_VOICES]

    silent = [
        voice.id
        for voice, chunk in zip(ESPEAK_VOICES, asyncio.run(speak_all()), strict=True)
        if speech_seconds(chunk.pcm, chunk.sample_rate) < 0.3
    ]
    assert silent == []
