"""Shared builders for valid resources; each test breaks exactly one thing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

AVATAR_NAME = "av-01jcz3v7m4q8r2t6w9x0y1z2a3"


def valid_session_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenant": "acme",
        "avatarRef": AVATAR_NAME,
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "livekit": {"url": "wss://rtc.example.com", "roomName": "support-42"},
        },
        "tokenSecretRef": {"name": "sess-01jcz3v7m4q8r2t6w9x0y1z2a3-token"},
    }
    spec.update(overrides)
    return spec


def valid_avatar_spec(**overrides: Any) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "tenant": "acme",
        "image": {
            "uri": "file:///var/lib/facecast/avatars/av-01jcz3v7m4q8r2t6w9x0y1z2a3.jpg",
            "width": 600,
            "height": 800,
            "sha256": "0" * 64,
            "sizeBytes": 51234,
        },
        "face": {
            "box": {"x": 150, "y": 200, "width": 300, "height": 360},
            "landmarks": [{"x": 250 + i, "y": 330 + i} for i in range(5)],
            "score": 0.93,
            "detector": "test",
        },
    }
    spec.update(overrides)
    return spec


SpecFactory = Callable[..., dict[str, Any]]


@pytest.fixture
def session_spec() -> dict[str, Any]:
    return valid_session_spec()


@pytest.fixture
def avatar_spec() -> dict[str, Any]:
    return valid_avatar_spec()


@pytest.fixture
def make_session_spec() -> SpecFactory:
    return valid_session_spec


@pytest.fixture
def make_avatar_spec() -> SpecFactory:
    return valid_avatar_spec
