"""Shared builders for valid resources; each test breaks exactly one thing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from testbed.objects import avatar_manifest

AVATAR_PUBLIC_ID = "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
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
    spec: dict[str, Any] = avatar_manifest(AVATAR_PUBLIC_ID, "acme")["spec"]
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
