"""Renderer tiers behind one interface (`render.base.Renderer`)."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

from avatar_crds.contract import ENV_MODEL_DIR, MODEL_DIR
from avatar_crds.enums import FailureReason, Quality
from avatar_worker.errors import WorkerError
from avatar_worker.render.base import Renderer
from avatar_worker.render.lite import LiteRenderer, LiteRig
from avatar_worker.render.mock import MockRenderer
from avatar_worker.render.portrait import Portrait
from avatar_worker.render.resolution import VideoFormat


def needs_portrait(quality: Quality) -> bool:
    """The mock tier draws synthetic frames and never reads the avatar."""
    return quality is not Quality.MOCK


def model_dir() -> Path:
    """Where the standard and pro tiers' weights are (`FACECAST_MODEL_DIR`, else /models)."""
    return Path(os.environ.get(ENV_MODEL_DIR) or MODEL_DIR)


def build_renderer(
    quality: Quality,
    fmt: VideoFormat,
    portrait: Callable[[], Portrait | LiteRig],
    models: Path | None = None,
) -> Renderer:
    """The tier's renderer, drawing `portrait()` (read only by the tiers that draw it): the
    avatar's portrait, or its rig already prepared for this frame size (`render.rig_cache`)."""
    size = (fmt.width, fmt.height)
    if quality is Quality.MOCK:
        return MockRenderer(*size)
    if quality is Quality.LITE:
        return LiteRenderer(portrait(), size)
    if quality in (Quality.STANDARD, Quality.PRO):
        # torch loads only for these tiers; they differ in frame size and bitrate (resolution).
        from avatar_worker.neural.shared import neural_renderer

        return neural_renderer(portrait(), size, models or model_dir())
    raise WorkerError(
        FailureReason.MODEL_UNAVAILABLE,
        f"the {quality.value} tier is not available in this worker image yet",
    )
