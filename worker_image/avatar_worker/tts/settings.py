"""Which TTS engines this worker may use, from the pod's environment (names in
`avatar_crds.contract`, set by the operator from the chart's `tts.openai`). Pure: the key file's
path is kept, never the key (the engine reads the file on every request)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from avatar_crds import contract
from avatar_crds.voices import VoiceCatalogue, catalogue


@dataclass(frozen=True)
class TtsSettings:
    openai_base_url: str = ""
    openai_api_key_file: str = ""
    openai_voices: str = ""  # the raw JSON list, as avatar_crds.voices reads it

    @classmethod
    def from_env(cls, environ: Mapping[str, str]) -> TtsSettings:
        """ValueError when the voice list is not valid (the worker refuses to start)."""
        settings = cls(
            openai_base_url=environ.get(contract.ENV_TTS_OPENAI_BASE_URL, "").strip(),
            openai_api_key_file=environ.get(contract.ENV_TTS_OPENAI_API_KEY_FILE, "").strip(),
            openai_voices=environ.get(contract.ENV_TTS_OPENAI_VOICES, ""),
        )
        settings.catalogue()
        return settings

    def catalogue(self) -> VoiceCatalogue:
        return catalogue(self.openai_voices)
