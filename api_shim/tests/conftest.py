"""Builders shared by the api_shim tests, as fixtures, and the fixtures of control_plane.py.
This directory is deliberately not a package: pytest's importlib mode gives it the name
`api_shim.tests` while it collects, which is how the test modules import control_plane.py."""

from __future__ import annotations

import copy
import importlib
import io
import logging
import sys
from collections.abc import Callable, Iterator
from typing import Any


def _unshadow_api_shim() -> None:
    """pytest's importlib mode names the modules here `api_shim.tests.*` and, to import their
    parent, may load the workspace folder `api_shim/` as a namespace package that hides the
    real `api_shim` package inside it. Put the real package back before any test imports it."""
    loaded = sys.modules.get("api_shim")
    if loaded is not None and getattr(loaded, "__file__", None) is None:
        del sys.modules["api_shim"]
        importlib.import_module("api_shim")


_unshadow_api_shim()

import pytest  # noqa: E402

# Its helpers assert; rewritten, their failures show the values as the tests' own asserts do.
pytest.register_assert_rewrite("api_shim.tests.control_plane")

from api_shim.tests.control_plane import cluster, cluster_namespace  # noqa: E402

__all__ = ["cluster", "cluster_namespace"]

AVATAR_ID = "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
WORKER_TOKEN = "lk-worker-token-7f3a9c1e5b2d4f6a8c0e"  # distinctive, so greps find any leak

RequestFactory = Callable[..., dict[str, Any]]


def build_request(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {
        "avatar_id": AVATAR_ID,
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "support-42",
            "worker_token": WORKER_TOKEN,
        },
    }
    body.update(copy.deepcopy(overrides))
    return body


@pytest.fixture
def make_request() -> RequestFactory:
    """A valid POST /v1/sessions body; keyword arguments replace top-level fields."""
    return build_request


@pytest.fixture
def worker_token() -> str:
    """The token every `make_request` body carries."""
    return WORKER_TOKEN


@pytest.fixture
def captured_logs() -> Iterator[io.StringIO]:
    """Every log line (structlog and standard library) of the test, as configured in
    production; the previous logging setup is restored afterwards."""
    import structlog

    from api_shim.logging import configure_logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    stream = io.StringIO()
    configure_logging("debug", stream)
    try:
        yield stream
    finally:
        root.handlers, root.level = handlers, level
        structlog.reset_defaults()
