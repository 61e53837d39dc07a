"""The pure translations of the compatibility layer: requests into Facecast's, sessions into
each service's view, Facecast's errors into each service's, and the room a LiveKit token
names."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from typing import Any

import pytest

from api_shim.compat import agenthuman_schemas as ah
from api_shim.compat import agenthuman_translate as aht
from api_shim.compat import protoface_schemas as pf
from api_shim.compat import protoface_translate as pft
from api_shim.compat.layer import rename_params
from api_shim.compat.livekit_token import TokenClaimsError, room_grant
from api_shim.errors import ApiError, ErrorDetail, ErrorType
from api_shim.schemas import Concurrency, Minutes, Usage
from api_shim.sessions.schemas import (
    DailyTransportRequest,
    LiveKitTransportRequest,
    LiveKitTransportView,
    Session,
    SessionUsage,
)
from avatar_crds.enums import AspectRatio, AudioSource, Phase, Quality
from avatar_crds.tenant import Plan

AVATAR = "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
CREATED = datetime(2026, 5, 25, 19, 0, tzinfo=UTC)


def jwt(claims: dict[str, Any]) -> str:
    def part(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"{part({'alg': 'HS256'})}.{part(claims)}.signature"


def plan(**fields: Any) -> Plan:
    values: dict[str, Any] = {
        "max_concurrent_sessions": 1,
        "minutes": 60,
        "max_session_duration_seconds": 900,
        "allowed_qualities": [Quality.MOCK, Quality.LITE],
        "requests_per_minute": 60,
        **fields,
    }
    return Plan.model_validate(values)


def detail(code: str, message: str = "m", param: str | None = None, **fields: Any) -> ErrorDetail:
    return ErrorDetail(
        type=fields.get("type", ErrorType.INVALID_REQUEST),
        code=code,
        message=message,
        param=param,
        request_id="req_1",
    )


def session(**fields: Any) -> Session:
    values: dict[str, Any] = {
        "id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
        "status": Phase.CREATED,
        "avatar_id": AVATAR,
        "quality": Quality.LITE,
        "aspect_ratio": AspectRatio.LANDSCAPE,
        "video_encoding": "VP8",
        "voice": None,
        "transport": LiveKitTransportView(
            url="wss://my-app.livekit.cloud",
            room_name="demo-room",
            worker_identity="protoface-worker",
            audio_source=AudioSource.DATA_STREAM,
            subscribe_to_identity=None,
            synthetic_audio_if_no_input=False,
        ),
        "idle_timeout_seconds": 30,
        "max_duration_seconds": 600,
        "metadata": {"a": "b"},
        "created_at": CREATED,
        "queued_at": None,
        "started_at": None,
        "first_frame_at": None,
        "end_requested_at": None,
        "keep_alive_at": None,
        "ended_at": None,
        "failed_at": None,
        "end_reason": None,
        "failure": None,
        "usage": SessionUsage(billable_seconds=12.9, frames=300),
        "expiration": None,
        **fields,
    }
    return Session.model_validate(values)


# --- LiveKit tokens ------------------------------------------------------------------------------


def test_room_grant_reads_room_and_identity() -> None:
    grant = room_grant(jwt({"sub": "avatar", "video": {"room": "r1", "roomJoin": True}}))
    assert (grant.room, grant.identity) == ("r1", "avatar")
    assert room_grant(jwt({"video": {"room": "r1"}})).identity is None


@pytest.mark.parametrize(
    "token", ["not-a-jwt", "a.!!!.c", jwt({"sub": "x"}), jwt({"video": {"room": ""}}), "a.W10.c"]
)
def test_room_grant_refuses_tokens_without_a_room(token: str) -> None:
    with pytest.raises(TokenClaimsError):
        room_grant(token)


# --- AgentHuman ----------------------------------------------------------------------------------


def agenthuman(**fields: Any) -> ah.AgentHumanCreateSession:
    values: dict[str, Any] = {
        "avatar": AVATAR,
        "room": {
            "platform": "livekit",
            "url": "https://my-app.livekit.cloud",
            "token": jwt({"sub": "me", "video": {"room": "r1"}}),
        },
        **fields,
    }
    return ah.AgentHumanCreateSession.model_validate(values)


def test_agenthuman_request_becomes_a_livekit_session_of_the_plans_length() -> None:
    request = aht.to_create_request(agenthuman(metadata={"k": 1}), plan())
    transport = request.transport
    assert isinstance(transport, LiveKitTransportRequest)
    assert (transport.url, transport.room_name, transport.worker_identity) == (
        "wss://my-app.livekit.cloud",
        "r1",
        "me",
    )
    assert request.avatar_id == AVATAR
    assert request.quality is Quality.LITE  # the best tier rendered and allowed
    assert request.aspect_ratio is AspectRatio.LANDSCAPE
    assert (request.idle_timeout_seconds, request.max_duration_seconds) == (None, 900)
    assert request.metadata == {"k": 1}


def test_agenthuman_avatar_forms() -> None:
    by_url = aht.to_create_request(agenthuman(avatar="https://example.com/p.jpg"), plan())
    assert by_url.avatar is not None
    assert by_url.avatar.image_url == "https://example.com/p.jpg"
    by_data = aht.to_create_request(agenthuman(avatar="data:image/jpeg;base64,AAAA"), plan())
    assert by_data.avatar is not None
    assert by_data.avatar.image_base64 is not None
    with pytest.raises(ApiError) as raised:
        aht.to_create_request(agenthuman(avatar="avat_01H3Z8G9YR3K2N5M6P7Q8W4T"), plan())
    assert (raised.value.status, raised.value.code) == (404, "avatar_not_found")


def test_agenthuman_daily_room_is_passed_on_for_facecast_to_refuse() -> None:
    room = {"platform": "daily", "url": "https://acme.daily.co/r", "token": "t"}
    request = aht.to_create_request(agenthuman(room=room), plan())
    assert isinstance(request.transport, DailyTransportRequest)


def test_agenthuman_token_without_a_room_is_refused_without_quoting_it() -> None:
    token = jwt({"sub": "me"})
    room = {"platform": "livekit", "url": "wss://x.example", "token": token}
    with pytest.raises(ApiError) as raised:
        aht.to_create_request(agenthuman(room=room), plan())
    assert raised.value.code == "invalid_room_token"
    assert token not in raised.value.message
    translated = aht.translate_error(400, detail("invalid_room_token", param=raised.value.param))
    assert translated.body["param"] == "room.token"


def test_agenthuman_quality_falls_back_to_the_best_rendered_tier() -> None:
    assert aht.session_quality(plan(allowed_qualities=[Quality.MOCK])) is Quality.MOCK
    assert aht.session_quality(plan(allowed_qualities=[Quality.PRO])) is Quality.LITE
    # Where the installation has the model weights, the best tier is a neural one.
    every = frozenset(Quality)
    assert aht.session_quality(plan(allowed_qualities=list(Quality)), every) is Quality.PRO


def test_agenthuman_response_before_and_after_the_session_runs() -> None:
    usage = Usage(
        concurrency=Concurrency(current=1, max=1, available=0),
        minutes=Minutes(included=120, used=0, total_remaining=120),
        period_start=None,
    )
    fresh = aht.to_created(session(), usage)
    assert fresh.session.status == "started"
    assert fresh.session.started_at == CREATED
    assert fresh.session.expiration == datetime(2026, 5, 25, 19, 10, tzinfo=UTC)
    assert fresh.usage.minutes.total_remaining == 120
    deadline = datetime(2026, 5, 25, 19, 11, tzinfo=UTC)
    failed = aht.to_created(
        session(status=Phase.FAILED, failed_at=deadline, expiration=deadline), usage
    )
    assert (failed.session.status, failed.session.ended_at) == ("ended", deadline)
    assert failed.session.expiration == deadline


def test_agenthuman_errors() -> None:
    unprocessable = aht.translate_error(
        422,
        detail(
            "transport_url_forbidden",
            "transport.url: private address",
            "transport.url",
            type=ErrorType.UNPROCESSABLE,
        ),
    )
    assert unprocessable.status == 400
    assert unprocessable.body == {
        "success": False,
        "error": "transport_url_forbidden",
        "message": "room.url: private address",
        "param": "room.url",
        "request_id": "req_1",
    }
    assert aht.translate_error(429, detail("concurrency_limit_reached")).status == 429
    assert aht.translate_error(404, detail("avatar_not_found", param="avatar_id")).body[
        "param"
    ] == ("avatar")


def test_rename_params_renames_nested_params_and_longest_names_first() -> None:
    renamed = rename_params(
        detail("x", "transport.url and transport", "transport.url.host"),
        {"transport": "room", "transport.url": "room.address"},
    )
    assert (renamed.param, renamed.message) == ("room.address.host", "room.address and room")


# --- Protoface -----------------------------------------------------------------------------------


def protoface(**fields: Any) -> pf.ProtofaceCreateSession:
    values: dict[str, Any] = {
        "avatar_id": AVATAR,
        "transport": {"url": "wss://my-app.livekit.cloud", "room_name": "r", "worker_token": "t"},
        **fields,
    }
    return pf.ProtofaceCreateSession.model_validate(values)


def test_protoface_defaults_are_protofaces() -> None:
    request = pft.to_create_request(protoface())
    assert request.quality is Quality.STANDARD
    transport = request.transport
    assert isinstance(transport, LiveKitTransportRequest)
    assert transport.worker_identity == "protoface-worker"
    # Omitted durations are not "given": Facecast's default (the same) is lowered to the plan.
    assert not {"idle_timeout_seconds", "max_duration_seconds"} & request.model_fields_set
    given = pft.to_create_request(protoface(max_duration_seconds=100))
    assert "max_duration_seconds" in given.model_fields_set


def test_protoface_other_transports_are_unsupported() -> None:
    body = protoface(
        transport={"type": "pipecat", "url": "x", "room_name": "r", "worker_token": "t"}
    )
    with pytest.raises(ApiError) as raised:
        pft.to_create_request(body)
    assert (raised.value.status, raised.value.code, raised.value.param) == (
        400,
        "transport.unsupported",
        "transport.type",
    )


def test_protoface_view() -> None:
    view = pft.to_session(session())
    assert view.status is Phase.QUEUED  # admitted and waiting, as Protoface says
    assert view.usage.billable_seconds == 12
    assert view.transport.worker_token == "[redacted]"
    assert pft.to_session(session(status=Phase.RUNNING)).status is Phase.RUNNING


def test_protoface_errors() -> None:
    validation = pft.translate_error(400, detail("parameter_missing", param="transport"))
    assert validation.status == 422
    assert validation.body["error"]["code"] == "parameter_missing"
    transport = pft.translate_error(
        422, detail("transport_not_supported", type=ErrorType.UNPROCESSABLE)
    )
    assert (transport.status, transport.body["error"]["code"]) == (400, "transport.unsupported")
    assert transport.body["error"]["type"] == "invalid_request"
    forbidden = pft.translate_error(400, detail("transport_url_forbidden"))
    assert forbidden.status == 400
    capacity = pft.translate_error(503, detail("at_capacity", type=ErrorType.SERVICE_UNAVAILABLE))
    assert capacity.status == 503
    assert set(capacity.body["error"]) == {"type", "code", "message", "param", "request_id"}
