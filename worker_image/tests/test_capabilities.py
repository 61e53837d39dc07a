"""The tiers and transports the API accepts (`avatar_crds.capabilities`) are exactly the ones
this worker image runs: one added to the contract but not to the worker fails here, not in a
customer's session."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from avatar_crds.capabilities import (
    NEEDS_MODEL_WEIGHTS,
    RENDERABLE_QUALITIES,
    SUPPORTED_TRANSPORTS,
)
from avatar_crds.enums import AspectRatio, FailureReason, Quality, TransportType
from avatar_crds.session import DailyTransport, Transport
from avatar_worker.config import FileSessionSource
from avatar_worker.errors import WorkerError
from avatar_worker.render import build_renderer
from avatar_worker.render.portrait import FaceGeometry, Portrait
from avatar_worker.render.resolution import video_format
from avatar_worker.reporting import JsonLinesStatusSink
from avatar_worker.worker import EXIT_FAILED, Worker
from worker_image.tests.astronaut import ASTRONAUT_FACE, astronaut_rgb
from worker_image.tests.neural_support import write_tiny
from worker_image.tests.support import session_resource, write_worker_files


def portrait() -> Portrait:
    return Portrait(image=astronaut_rgb(), face=FaceGeometry.from_face(ASTRONAUT_FACE))


@pytest.mark.parametrize("quality", list(Quality))
def test_the_worker_renders_exactly_the_tiers_the_api_accepts(
    quality: Quality, tmp_path: Path
) -> None:
    fmt = video_format(quality, AspectRatio.LANDSCAPE)
    # The neural tiers render from weights on the model volume (here a tiny random model).
    models = write_tiny(tmp_path / "models") if quality in NEEDS_MODEL_WEIGHTS else None
    if quality in RENDERABLE_QUALITIES:
        build_renderer(quality, fmt, portrait, models=models).close()
        return
    with pytest.raises(WorkerError) as raised:
        build_renderer(quality, fmt, portrait)
    assert raised.value.reason is FailureReason.MODEL_UNAVAILABLE


def test_a_neural_tier_without_its_weights_is_model_unavailable(tmp_path: Path) -> None:
    fmt = video_format(Quality.STANDARD, AspectRatio.LANDSCAPE)
    with pytest.raises(WorkerError) as raised:
        build_renderer(Quality.STANDARD, fmt, portrait, models=tmp_path / "empty")
    assert raised.value.reason is FailureReason.MODEL_UNAVAILABLE


@pytest.mark.parametrize(
    "kind", [kind for kind in TransportType if kind not in SUPPORTED_TRANSPORTS]
)
def test_a_transport_the_api_refuses_is_one_the_worker_cannot_join(
    kind: TransportType, tmp_path: Path
) -> None:
    session = session_resource(url="wss://rtc.example.com", room="r")
    session.spec.transport = Transport(type=kind, daily=DailyTransport(url="https://a.daily.co/r"))
    files = write_worker_files(tmp_path, session, "x.y.z")
    config = files.config()
    assert config.session_file is not None
    worker = Worker(
        config,
        FileSessionSource(config.session_file, config.avatar_file),
        JsonLinesStatusSink(config.status_file),
    )
    assert asyncio.run(worker.run()) == EXIT_FAILED
    failure = files.statuses()[-1]["failure"]
    assert failure["reason"] == FailureReason.ROOM_UNREACHABLE.value
    assert f"the {kind} transport is not supported" in failure["message"]
