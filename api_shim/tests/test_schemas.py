"""The public request model refuses what the issue says it must, and names the field."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from api_shim.errors import validation_error
from api_shim.sessions.schemas import CreateSessionRequest, LiveKitTransportRequest

RequestFactory = Callable[..., dict[str, Any]]


def _refused_param(body: dict[str, Any]) -> str | None:
    """Validate like FastAPI does (errors located under "body") and return the named param."""
    with pytest.raises(ValidationError) as caught:
        CreateSessionRequest.model_validate(body)
    errors = [{**error, "loc": ("body", *error["loc"])} for error in caught.value.errors()]
    return validation_error(errors).param


def test_a_minimal_request_gets_the_documented_defaults(make_request: RequestFactory) -> None:
    request = CreateSessionRequest.model_validate(make_request())
    assert request.aspect_ratio == "4:3"
    assert request.video_encoding == "VP8"
    assert request.idle_timeout_seconds == 30
    assert request.max_duration_seconds == 600
    assert request.metadata == {}
    assert request.transport.type == "livekit"


def test_the_worker_token_never_shows_in_repr_or_dump(
    make_request: RequestFactory, worker_token: str
) -> None:
    request = CreateSessionRequest.model_validate(make_request())
    assert worker_token not in repr(request)
    assert worker_token not in str(request.model_dump())
    assert worker_token not in request.model_dump_json()
    assert isinstance(request.transport, LiveKitTransportRequest)
    assert request.transport.worker_token.get_secret_value() == worker_token


@pytest.mark.parametrize("metadata", [[1, 2], "text", 42, 1.5, None, True])
def test_metadata_must_be_an_object(make_request: RequestFactory, metadata: object) -> None:
    assert _refused_param(make_request(metadata=metadata)) == "metadata"


def test_metadata_over_8_kb_is_refused(make_request: RequestFactory) -> None:
    assert _refused_param(make_request(metadata={"blob": "x" * 8200})) == "metadata"


def test_metadata_of_just_under_8_kb_is_accepted(make_request: RequestFactory) -> None:
    request = CreateSessionRequest.model_validate(make_request(metadata={"blob": "x" * 8000}))
    assert len(request.metadata["blob"]) == 8000


def test_reserved_metadata_keys_are_refused(make_request: RequestFactory) -> None:
    assert _refused_param(make_request(metadata={"_avatar.internal": 1})) == "metadata"


def test_too_many_metadata_keys_are_refused(make_request: RequestFactory) -> None:
    many = {f"k{index}": index for index in range(65)}
    assert _refused_param(make_request(metadata=many)) == "metadata"


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("aspect_ratio", "16:9"),
        ("quality", "ultra"),
        ("video_encoding", "AV1"),
        ("idle_timeout_seconds", 0),
        ("idle_timeout_seconds", 601),
        ("idle_timeout_seconds", "30"),
        ("max_duration_seconds", 0),
        ("max_duration_seconds", 3601),
        ("max_duration_seconds", 60.5),
        ("avatar_id", "av_not-a-ulid"),
        ("avatar_id", "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"),
        ("unknown_field", 1),
    ],
)
def test_bad_top_level_fields_are_named(
    make_request: RequestFactory, field: str, value: object
) -> None:
    assert _refused_param(make_request(**{field: value})) == field


@pytest.mark.parametrize("field", ["idle_timeout_seconds", "max_duration_seconds"])
def test_whole_numbers_written_as_floats_are_integers(
    make_request: RequestFactory, field: str
) -> None:
    """JSON (and JSON Schema) has one number type: 45.0 is the integer 45."""
    request = CreateSessionRequest.model_validate(make_request(**{field: 45.0}))
    value = getattr(request, field)
    assert (value, type(value)) == (45, int)
    assert _refused_param(make_request(**{field: 45.5})) == field
    assert _refused_param(make_request(**{field: True})) == field


def test_idle_timeout_null_disables_it(make_request: RequestFactory) -> None:
    assert CreateSessionRequest.model_validate(make_request(idle_timeout_seconds=None))
    request = CreateSessionRequest.model_validate(make_request(idle_timeout_seconds=None))
    assert request.idle_timeout_seconds is None


@pytest.mark.parametrize(
    ("transport", "param"),
    [
        ({"type": "zoom", "url": "wss://x.example.com"}, "transport"),
        # Without `type` it is a LiveKit transport, checked as one.
        ({"url": "https://x.example.com", "room_name": "r", "worker_token": "t"}, "transport.url"),
        (
            {
                "type": "livekit",
                "url": "https://x.example.com",
                "room_name": "r",
                "worker_token": "t",
            },
            "transport.url",
        ),
        (
            {"type": "livekit", "url": "wss://x.example.com", "worker_token": "t"},
            "transport.room_name",
        ),
        (
            {"type": "livekit", "url": "wss://x.example.com", "room_name": "r"},
            "transport.worker_token",
        ),
        (
            {"type": "livekit", "url": "wss://x", "room_name": "r", "worker_token": ""},
            "transport.worker_token",
        ),
        (
            {
                "type": "livekit",
                "url": "wss://x.example.com",
                "room_name": "r",
                "worker_token": "t",
                "audio_source": "microphone",
            },
            "transport.audio_source",
        ),
        ({"type": "daily", "url": "wss://x.example.com", "worker_token": "t"}, "transport.url"),
    ],
)
def test_bad_transports_are_named_without_the_union_tag(
    make_request: RequestFactory, transport: dict[str, Any], param: str
) -> None:
    assert _refused_param(make_request(transport=transport)) == param


def test_a_transport_without_type_is_livekit(make_request: RequestFactory) -> None:
    """Protoface's default: its customers' bodies may leave `transport.type` out."""
    transport = {"url": "wss://x.example.com", "room_name": "r", "worker_token": "t"}
    request = CreateSessionRequest.model_validate(make_request(transport=transport))
    assert isinstance(request.transport, LiveKitTransportRequest)
    assert request.transport.worker_identity == "facecast-worker"
    documented = CreateSessionRequest.model_json_schema()["$defs"]["LiveKitTransportRequest"]
    assert "type" not in documented["required"]
    assert documented["properties"]["type"]["default"] == "livekit"
    identity = documented["properties"]["worker_identity"]
    assert identity["default"] == "facecast-worker"
    assert "`facecast-worker`" in identity["description"]


def test_a_daily_room_is_accepted(make_request: RequestFactory) -> None:
    transport = {"type": "daily", "url": "https://acme.daily.co/room", "worker_token": "t"}
    request = CreateSessionRequest.model_validate(make_request(transport=transport))
    assert request.transport.type == "daily"


@pytest.mark.parametrize("speed", [0.4, 2.1, "1.0"])
def test_voice_speed_is_bounded(make_request: RequestFactory, speed: object) -> None:
    assert _refused_param(make_request(voice={"id": "v1", "speed": speed})) == "voice.speed"
