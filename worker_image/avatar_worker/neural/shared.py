"""One BatchRenderer per worker process and model directory, loaded on first use."""

from __future__ import annotations

import threading
from pathlib import Path

from avatar_crds.enums import FailureReason
from avatar_worker.errors import WorkerError
from avatar_worker.logging import get_logger
from avatar_worker.neural.batch import BatchRenderer, NeuralRenderer
from avatar_worker.neural.layout import ModelFilesError
from avatar_worker.neural.model import MuseTalk
from avatar_worker.render.lite import LiteRig
from avatar_worker.render.portrait import Portrait

log = get_logger("avatar_worker.neural")

_renderers: dict[Path, BatchRenderer] = {}
_lock = threading.Lock()


def batch_renderer(model_dir: Path, *, sessions: int = 1) -> BatchRenderer:
    """The process's renderer for `model_dir`, sized on first use for `sessions` at once (one
    frame each per pass); WorkerError(model_unavailable) naming the file if a weights file is
    missing, corrupt or does not fit its config."""
    key = model_dir.resolve()
    with _lock:
        if key not in _renderers:
            try:
                model = MuseTalk.load(key, max_batch=sessions)
            except ModelFilesError as exc:
                raise WorkerError(FailureReason.MODEL_UNAVAILABLE, str(exc)) from exc
            log.info(
                "neural model loaded",
                model=model.config.name,
                device=str(model.device),
                dtype=str(model.dtype),
            )
            _renderers[key] = BatchRenderer(model)
        return _renderers[key]


def neural_renderer(
    portrait: Portrait | LiteRig, size: tuple[int, int], model_dir: Path
) -> NeuralRenderer:
    return batch_renderer(model_dir).register(portrait, size)
