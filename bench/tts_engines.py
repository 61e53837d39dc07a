"""TTS real-time factor and time to first audio, per engine.

    uv run --frozen --no-sync python bench/tts_engines.py [--runs 5]

Speaks the same multi-sentence text with each engine, consuming the chunks as fast as they
come, and prints per engine: time to the first chunk, total synthesis time, seconds of audio,
and the real-time factor (synthesis time / audio time: under 1 is faster than real time).
The OpenAI-compatible engine runs against the local stand-in server (testbed/
openai_speech_standin.py), which itself speaks with espeak-ng: its figures are espeak-ng's plus
the HTTP streaming and resampling overhead, not those of a real speech server. Not part of the
test suite; the numbers depend on the machine.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))

from avatar_worker.tts.engine import TtsEngine  # noqa: E402
from avatar_worker.tts.espeak import EspeakEngine  # noqa: E402
from avatar_worker.tts.openai_compatible import (  # noqa: E402
    OpenAICompatibleEngine,
    OpenAISpeechConfig,
)
from testbed.openai_speech_standin import speech_standin  # noqa: E402

TEXT = (
    "Good morning, and welcome to the support line. I can help you with your order, your"
    " invoice or your delivery. Please tell me your order number when you are ready. It starts"
    " with two letters and has eight digits. You will find it in the confirmation email."
)
KEY_ENV = "FACECAST_BENCH_TTS_KEY"
KEY = "sk-bench-standin"


@dataclass(frozen=True)
class Run:
    first_s: float
    total_s: float
    audio_s: float

    @property
    def rtf(self) -> float:
        return self.total_s / self.audio_s


async def speak(engine: TtsEngine, voice: str) -> Run:
    started = time.perf_counter()
    first: float | None = None
    audio = 0.0
    async for chunk in engine.stream(TEXT, voice=voice):
        first = first if first is not None else time.perf_counter() - started
        audio += chunk.seconds
    assert first is not None
    return Run(first, time.perf_counter() - started, audio)


def report(name: str, runs: list[Run]) -> None:
    def median(values: list[float]) -> float:
        return statistics.median(values)

    print(
        f"{name:<32} first chunk {median([r.first_s for r in runs]) * 1000:7.1f} ms"
        f"   total {median([r.total_s for r in runs]) * 1000:7.1f} ms"
        f"   audio {median([r.audio_s for r in runs]):5.2f} s"
        f"   RTF {median([r.rtf for r in runs]):.4f}"
        f" (x{1 / median([r.rtf for r in runs]):.0f} real time)"
    )


async def main(runs: int) -> None:
    print(f"text: {len(TEXT.split())} words, {runs} runs each, medians")
    espeak = EspeakEngine()
    report("espeak-ng (en-us)", [await speak(espeak, "en-us") for _ in range(runs)])
    os.environ[KEY_ENV] = KEY
    async with speech_standin(KEY) as standin:
        remote = OpenAICompatibleEngine(OpenAISpeechConfig(standin.base_url, api_key_env=KEY_ENV))
        try:
            measured = [await speak(remote, "alloy") for _ in range(runs)]
        finally:
            await remote.aclose()
    report("openai-compatible (stand-in)", measured)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    asyncio.run(main(parser.parse_args().runs))
