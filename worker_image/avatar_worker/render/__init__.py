"""Renderer tiers behind one interface (`render.base.Renderer`)."""

from __future__ import annotations

from collections.abc import Callable

from avatar_crds.enums import FailureReason, Quality
from avatar_worker.errors import WorkerError
from avatar_worker.render.base import Renderer
from avatar_worker.render.lite import LiteRenderer
from avatar_worker.render.mock import MockRenderer
from avatar_worker.render.portrait import Portrait
from avatar_worker.render.resolution import VideoFormat


def needs_portrait(quality: Quality) -> bool:
    """The mock tier draws synthetic frames and never reads the avatar."""
    return quality is not Quality.MOCK


def build_renderer(
    quality: Quality, fmt: VideoFormat, portrait: Callable[[], Portrait]
) -> Renderer:
    size = (fmt.width, fmt.height)
    if quality is Quality.MOCK:
        return MockRenderer(*size)
    if quality is Quality.LITE:
        return LiteRenderer(portrait(), size)
    raise WorkerError(
        FailureReason.MODEL_UNAVAILABLE,
        f"the {quality.value} tier is not available in this worker image yet",
    )
