"""Every AvatarSessionSpec validation rule, each with a passing and a failing example."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from avatar_crds.enums import AudioSource, Quality
from avatar_crds.session import AvatarSessionSpec, LiveKitTransport

SpecFactory = Callable[..., dict[str, Any]]


def test_valid_spec_gets_design_defaults(session_spec: dict[str, Any]) -> None:
    spec = AvatarSessionSpec.model_validate(session_spec)
    assert spec.idle_timeout_seconds == 30
    assert spec.max_duration_seconds == 600
    assert spec.aspect_ratio == "4:3"
    assert spec.video.codec == "vp8"
    assert spec.transport.livekit is not None
    assert spec.transport.livekit.worker_identity == "facecast-worker"
    assert spec.transport.livekit.audio_source is AudioSource.DATA_STREAM
    assert spec.transport.livekit.synthetic_audio_if_no_input is False


@pytest.mark.parametrize(
    ("field", "good", "bad"),
    [
        ("quality", "pro", "ultra"),
        ("aspectRatio", "3:4", "16:9"),
        ("idleTimeoutSeconds", 600, 601),
        ("idleTimeoutSeconds", 1, 0),
        ("maxDurationSeconds", 3600, 3601),
        ("maxDurationSeconds", 1, 0),
        ("tenant", "acme-eu", "Acme_EU"),
        ("avatarRef", "av-01jcz3v7m4q8r2t6w9x0y1z2a3", "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"),
        ("voice", {"id": "nova", "speed": 0.5}, {"id": "nova", "speed": 0.49}),
        ("voice", {"id": "nova", "speed": 2.0}, {"id": "nova", "speed": 2.01}),
        ("video", {"codec": "h264"}, {"codec": "av1"}),
        ("video", {"width": 640, "height": 480}, {"width": 640}),
        ("video", {"width": 640, "height": 480}, {"width": 641, "height": 480}),
        ("video", {"bitrateKbps": 1500}, {"bitrateKbps": 50}),
        ("tokenSecretRef", {"name": "s-token", "key": "token"}, {"name": "S_Token"}),
        ("metadata", {"customer": {"id": 7}}, {"_avatar.internal": 1}),
        ("metadata", {"blob": "x" * 8000}, {"blob": "x" * 8200}),
        ("metadata", {f"k{i}": i for i in range(64)}, {f"k{i}": i for i in range(65)}),
    ],
)
def test_field_rule(field: str, good: Any, bad: Any, make_session_spec: SpecFactory) -> None:
    AvatarSessionSpec.model_validate(make_session_spec(**{field: good}))
    with pytest.raises(ValidationError):
        AvatarSessionSpec.model_validate(make_session_spec(**{field: bad}))


def test_idle_timeout_null_means_disabled_and_survives_serialisation(
    make_session_spec: SpecFactory,
) -> None:
    spec = AvatarSessionSpec.model_validate(make_session_spec(idleTimeoutSeconds=None))
    assert spec.idle_timeout_seconds is None
    body = spec.to_k8s()
    assert "idleTimeoutSeconds" in body
    assert body["idleTimeoutSeconds"] is None
    assert "voice" not in body  # an unset optional is omitted, not sent as null


@pytest.mark.parametrize(
    ("transport", "ok"),
    [
        ({"type": "livekit", "livekit": {"url": "ws://127.0.0.1:7880", "roomName": "r"}}, True),
        ({"type": "daily", "daily": {"url": "https://acme.daily.co/room"}}, True),
        ({"type": "livekit"}, False),
        ({"type": "daily", "livekit": {"url": "wss://x.example", "roomName": "r"}}, False),
        (
            {
                "type": "livekit",
                "livekit": {"url": "wss://x.example", "roomName": "r"},
                "daily": {"url": "https://acme.daily.co/room"},
            },
            False,
        ),
        ({"type": "livekit", "livekit": {"url": "https://x.example", "roomName": "r"}}, False),
        ({"type": "livekit", "livekit": {"url": "wss://x.example", "roomName": ""}}, False),
        ({"type": "daily", "daily": {"url": "http://acme.daily.co/room"}}, False),
        ({"type": "zoom"}, False),
    ],
)
def test_transport_union(
    transport: dict[str, Any], ok: bool, make_session_spec: SpecFactory
) -> None:
    data = make_session_spec(transport=transport)
    if ok:
        AvatarSessionSpec.model_validate(data)
    else:
        with pytest.raises(ValidationError):
            AvatarSessionSpec.model_validate(data)


def test_worker_token_has_no_field_anywhere_in_the_spec(make_session_spec: SpecFactory) -> None:
    """The token may only be referenced: a `token` key is an unknown field, not a value."""
    transport = {
        "type": "livekit",
        "livekit": {"url": "wss://x.example", "roomName": "r", "workerToken": "eyJ..."},
    }
    with pytest.raises(ValidationError, match="workerToken"):
        AvatarSessionSpec.model_validate(make_session_spec(transport=transport))
    assert not any("token" in name for name in LiveKitTransport.model_fields)


def test_enum_values_match_design() -> None:
    assert [q.value for q in Quality] == ["mock", "lite", "standard", "pro"]
