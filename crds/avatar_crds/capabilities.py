"""What this version of Facecast can run: the quality tiers the worker image renders and the
room transports it joins. The API refuses anything else when a session is created (rather than
accepting it and failing it later), and the worker's renderer table is tested against it, so
enabling a tier or a transport is one change here once the worker has it."""

from __future__ import annotations

from typing import Final

from avatar_crds.enums import Quality, TransportType

RENDERABLE_QUALITIES: Final = frozenset({Quality.MOCK, Quality.LITE})
SUPPORTED_TRANSPORTS: Final = frozenset({TransportType.LIVEKIT})
