"""Public request -> AvatarSession and back, with no cluster: pure functions only."""

from __future__ import annotations

import json
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from api_shim.sessions import mapping
from api_shim.sessions.schemas import (
    REDACTED,
    CreateSessionRequest,
    LiveKitTransportView,
    Session,
)
from avatar_crds import contract, phases
from avatar_crds.enums import Phase
from avatar_crds.session import AvatarSession

RequestFactory = Callable[..., dict[str, Any]]
NAME = "sess-01jcz3v7m4q8r2t6w9x0y1z2a3"
PUBLIC_ID = "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)


def _built(body: dict[str, Any], **options: Any) -> AvatarSession:
    return mapping.build_session(
        CreateSessionRequest.model_validate(body),
        name=NAME,
        namespace="facecast",
        tenant="acme",
        max_duration_seconds=options.pop("max_duration_seconds", 600),
        **options,
    )


def _stored(session: AvatarSession, status: dict[str, Any] | None = None) -> AvatarSession:
    """As the API server would return it: with a uid, a creation time and maybe a status."""
    raw = session.to_k8s()
    raw["metadata"] = {
        **mapping.session_body(session)["metadata"],
        "uid": "1234",
        "creationTimestamp": "2026-11-21T08:00:00Z",
        "resourceVersion": "7",
    }
    raw["status"] = status or {}
    return AvatarSession.model_validate(raw)


def test_the_spec_carries_the_request_but_never_the_token(
    make_request: RequestFactory, worker_token: str
) -> None:
    body = make_request(
        voice={"id": "v1", "speed": 1.5},
        video_encoding="H264",
        idle_timeout_seconds=None,
        metadata={"ticket": "T-1"},
    )
    session = _built(body, max_duration_seconds=300)
    spec = session.spec
    assert spec.tenant == "acme"
    assert spec.avatar_ref == "av-01jcz3v7m4q8r2t6w9x0y1z2a3"
    assert spec.quality == "lite"
    assert spec.aspect_ratio == "4:3"
    assert spec.video.codec == "h264"
    assert spec.voice is not None
    assert spec.voice.speed == 1.5
    assert spec.idle_timeout_seconds is None
    assert spec.max_duration_seconds == 300
    assert spec.metadata == {"ticket": "T-1"}
    assert spec.token_secret_ref.name == contract.token_secret_name(NAME)
    assert spec.token_secret_ref.key == contract.TOKEN_SECRET_KEY
    assert spec.transport.livekit is not None
    assert spec.transport.livekit.room_name == "support-42"
    assert worker_token not in json.dumps(mapping.session_body(session))


def test_a_disabled_idle_timeout_is_sent_as_an_explicit_null(make_request: RequestFactory) -> None:
    body = mapping.session_body(_built(make_request(idle_timeout_seconds=None)))
    assert body["spec"]["idleTimeoutSeconds"] is None


def test_labels_and_annotations(make_request: RequestFactory) -> None:
    session = _built(
        make_request(), extra_labels={"facecast.io/x": "1"}, annotations={"facecast.io/y": "2"}
    )
    body = mapping.session_body(session)
    assert body["metadata"]["labels"] == {
        contract.LABEL_SESSION: NAME,
        contract.LABEL_TENANT: "acme",
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_COMPONENT: "session",
        "facecast.io/x": "1",
    }
    assert body["metadata"]["annotations"] == {"facecast.io/y": "2"}
    assert "status" not in body
    assert body["kind"] == "AvatarSession"


def test_a_daily_room_maps_to_the_daily_transport(make_request: RequestFactory) -> None:
    transport = {"type": "daily", "url": "https://acme.daily.co/r", "worker_token": "t"}
    session = _built(make_request(transport=transport))
    assert session.spec.transport.type == "daily"
    assert session.spec.transport.daily is not None
    view = mapping.to_public_session(_stored(session)).transport
    assert view.type == "daily"
    assert view.worker_token == REDACTED


def test_the_token_secret_is_owned_by_the_session_and_labelled(worker_token: str) -> None:
    secret = mapping.token_secret_body(
        session_name=NAME, session_uid="1234", namespace="ns", tenant="acme", token=worker_token
    )
    assert secret["metadata"]["name"] == contract.token_secret_name(NAME)
    assert secret["stringData"] == {contract.TOKEN_SECRET_KEY: worker_token}
    owner = secret["metadata"]["ownerReferences"][0]
    assert (owner["kind"], owner["name"], owner["uid"], owner["controller"]) == (
        "AvatarSession",
        NAME,
        "1234",
        True,
    )
    assert secret["metadata"]["labels"][contract.LABEL_TENANT] == "acme"


def test_a_session_the_operator_has_not_seen_is_created(
    make_request: RequestFactory, worker_token: str
) -> None:
    public = mapping.to_public_session(_stored(_built(make_request(metadata={"k": "v"}))))
    assert public.id == PUBLIC_ID
    assert public.object == "session"
    assert public.status == Phase.CREATED
    assert public.avatar_id == "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
    assert public.created_at == datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
    assert public.metadata == {"k": "v"}
    assert isinstance(public.transport, LiveKitTransportView)
    assert public.transport.worker_token == REDACTED
    assert public.usage.frames == 0
    assert public.usage.billable_seconds == 0.0
    assert public.failure is None
    assert public.end_reason is None
    assert public.expiration is None
    assert worker_token not in public.model_dump_json()


def test_a_running_session_shows_its_timestamps_usage_and_expiration(
    make_request: RequestFactory,
) -> None:
    status = {
        "phase": "running",
        "queuedAt": "2026-11-21T08:00:01Z",
        "startingAt": "2026-11-21T08:00:02Z",
        "runningAt": "2026-11-21T08:00:03Z",
        "deadlines": {"maxDurationAt": "2026-11-21T08:10:03Z"},
        "worker": {"firstFrameAt": "2026-11-21T08:00:04Z", "frames": 250, "billableSeconds": 10.0},
    }
    public = mapping.to_public_session(_stored(_built(make_request()), status))
    assert public.status == Phase.RUNNING
    assert public.queued_at == datetime(2026, 11, 21, 8, 0, 1, tzinfo=UTC)
    assert public.started_at == datetime(2026, 11, 21, 8, 0, 3, tzinfo=UTC)
    assert public.first_frame_at == datetime(2026, 11, 21, 8, 0, 4, tzinfo=UTC)
    assert public.expiration == datetime(2026, 11, 21, 8, 10, 3, tzinfo=UTC)
    assert (public.usage.frames, public.usage.billable_seconds) == (250, 10.0)
    assert public.ended_at is None
    assert public.failed_at is None


def test_a_failed_session_shows_why(make_request: RequestFactory) -> None:
    status = {
        "phase": "failed",
        "reason": "unschedulable",
        "message": "no GPU node",
        "finishedAt": "2026-11-21T08:01:00Z",
    }
    public = mapping.to_public_session(_stored(_built(make_request()), status))
    assert public.failure is not None
    assert (public.failure.code, public.failure.message) == ("unschedulable", "no GPU node")
    assert public.failed_at == datetime(2026, 11, 21, 8, 1, tzinfo=UTC)
    assert public.ended_at is None
    assert public.end_reason is None


@pytest.mark.parametrize(
    ("phase", "reason"), [("ended", "idle_timeout"), ("canceled", "user_canceled")]
)
def test_ended_and_canceled_sessions_show_their_reason(
    make_request: RequestFactory, phase: str, reason: str
) -> None:
    status = {"phase": phase, "reason": reason, "finishedAt": "2026-11-21T08:02:00Z"}
    public = mapping.to_public_session(_stored(_built(make_request()), status))
    assert public.end_reason == reason
    assert public.ended_at == datetime(2026, 11, 21, 8, 2, tzinfo=UTC)
    assert public.failure is None
    assert public.failed_at is None


@pytest.mark.parametrize(
    ("phase", "active", "waiting"),
    [
        (None, True, True),
        ("queued", True, True),
        ("starting", True, False),
        ("running", True, False),
        ("ending", True, False),
        ("ended", False, False),
    ],
)
def test_which_sessions_count_for_concurrency_and_capacity(
    make_request: RequestFactory, phase: str | None, active: bool, waiting: bool
) -> None:
    status = {} if phase is None else {"phase": phase}
    if phase == "ended":
        status["reason"] = "user_ended"
    session = _stored(_built(make_request()), status)
    assert phases.session_holds_slot(session) is active
    assert phases.session_is_waiting(session) is waiting
    session.metadata.deletion_timestamp = "2026-11-21T08:03:00Z"
    assert not phases.session_holds_slot(session)
    assert not phases.session_is_waiting(session)


def test_the_public_view_validates_against_its_own_schema(make_request: RequestFactory) -> None:
    public = mapping.to_public_session(_stored(_built(make_request())))
    Session.model_validate_json(public.model_dump_json())
