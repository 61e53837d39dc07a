"""The interface every TTS engine offers, and the typed errors they raise."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class AudioChunk:
    """Mono int16 little-endian PCM: what the worker's speech inputs already take."""

    pcm: bytes
    sample_rate: int

    @property
    def seconds(self) -> float:
        return len(self.pcm) / 2 / self.sample_rate


class TtsEngine(Protocol):
    name: str

    def stream(self, text: str, *, voice: str, speed: float = 1.0) -> AsyncIterator[AudioChunk]:
        """Speech for `text` in chunks as they are synthesised; `voice` is the engine's own
        name for it (`CatalogueVoice.engine_voice`), `speed` 1.0 its normal rate. Closing the
        iterator early stops the synthesis. Raises a `TtsError`."""
        ...

    async def aclose(self) -> None: ...


class TtsError(Exception):
    """Speech could not be made. `retryable`: the same request may work later. The message
    never carries a credential."""

    retryable = False

    def __init__(self, message: str, *, status: int | None = None) -> None:
        super().__init__(message)
        self.status = status


class TtsAuthError(TtsError):
    """The server refused our credentials (401, 403), or there are none to send."""


class TtsRequestError(TtsError):
    """The server refused the request itself (another 4xx: unknown voice or model, bad input)."""


class TtsRateLimitedError(TtsError):
    retryable = True


class TtsServerError(TtsError):
    """The server failed (5xx) or answered something that is not speech."""

    retryable = True


class TtsTimeoutError(TtsError):
    """No connection, or no audio, within the engine's time limit."""

    retryable = True


class TtsUnavailableError(TtsError):
    """The engine cannot be reached or started (connection refused, no espeak-ng)."""

    retryable = True
