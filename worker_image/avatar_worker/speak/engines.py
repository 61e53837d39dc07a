"""The TTS engine for a catalogue voice, made on first use and kept for the session."""

from __future__ import annotations

from avatar_crds.voices import CatalogueVoice, VoiceEngine
from avatar_worker.tts.engine import TtsEngine, TtsUnavailableError
from avatar_worker.tts.espeak import EspeakEngine
from avatar_worker.tts.openai_compatible import OpenAICompatibleEngine, OpenAISpeechConfig
from avatar_worker.tts.settings import TtsSettings


class Engines:
    def __init__(self, settings: TtsSettings) -> None:
        self._settings = settings
        self._engines: dict[VoiceEngine, TtsEngine] = {}

    def engine_for(self, voice: CatalogueVoice) -> TtsEngine:
        """Raises TtsUnavailableError when the voice's engine cannot run here."""
        engine = self._engines.get(voice.engine)
        if engine is None:
            engine = self._engines[voice.engine] = self._make(voice.engine)
        return engine

    def _make(self, kind: VoiceEngine) -> TtsEngine:
        if kind is VoiceEngine.ESPEAK_NG:
            return EspeakEngine()
        if not self._settings.openai_base_url:
            raise TtsUnavailableError("no OpenAI-compatible TTS server is configured")
        return OpenAICompatibleEngine(
            OpenAISpeechConfig(
                base_url=self._settings.openai_base_url,
                api_key_file=self._settings.openai_api_key_file or None,
            )
        )

    async def aclose(self) -> None:
        for engine in self._engines.values():
            await engine.aclose()
        self._engines.clear()
