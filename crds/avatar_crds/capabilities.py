"""What this version of Facecast can run: the quality tiers the worker image renders and the
room transports it joins, and which of those tiers an installation serves. The API refuses
anything else when a session is created (rather than accepting it and failing it later), and
the worker's renderer table is tested against it, so enabling a tier or a transport is one
change here once the worker has it.

The neural tiers (`standard`, `pro`) need model weights on the workers' model volume, which only
some installations have: the chart tells the API which tiers it serves
(`contract.ENV_SERVED_QUALITIES`); without it, the tiers every worker renders."""

from __future__ import annotations

from typing import Final

from avatar_crds.enums import Quality, TransportType

RENDERABLE_QUALITIES: Final = frozenset({Quality.MOCK, Quality.LITE, Quality.STANDARD, Quality.PRO})
SUPPORTED_TRANSPORTS: Final = frozenset({TransportType.LIVEKIT})
# Rendered from weights on the model volume (the chart's worker.modelVolumeClaim).
NEEDS_MODEL_WEIGHTS: Final = frozenset({Quality.STANDARD, Quality.PRO})
SERVED_WITHOUT_WEIGHTS: Final = RENDERABLE_QUALITIES - NEEDS_MODEL_WEIGHTS


def parse_served_qualities(text: str) -> frozenset[Quality]:
    """`"mock,lite,standard"` -> those tiers; empty: the tiers that need no weights. ValueError
    names a tier that does not exist or that this version does not render."""
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        return SERVED_WITHOUT_WEIGHTS
    served = set()
    for name in names:
        try:
            tier = Quality(name)
        except ValueError:
            known = ", ".join(Quality)
            raise ValueError(f"{name!r} is not a quality tier ({known})") from None
        if tier not in RENDERABLE_QUALITIES:
            raise ValueError(f"this version does not render the {name} tier")
        served.add(tier)
    return frozenset(served)


def ordered(tiers: frozenset[Quality]) -> list[Quality]:
    """The tiers cheapest first, as the enum lists them."""
    return [tier for tier in Quality if tier in tiers]


def default_quality(served: frozenset[Quality]) -> Quality:
    """The tier of a session that names none: `standard` (Protoface's default) where the
    installation serves it, else `lite`, the best tier that needs no model weights."""
    return Quality.STANDARD if Quality.STANDARD in served else Quality.LITE
