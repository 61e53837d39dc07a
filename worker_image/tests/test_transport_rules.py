from __future__ import annotations

import pytest
from livekit import rtc

from avatar_crds.enums import FailureReason
from avatar_worker.errors import WorkerError
from avatar_worker.transport.livekit import (
    classify_connect_error,
    read_token,
    should_rejoin,
    token_claims,
)


@pytest.mark.parametrize(
    ("message", "reason"),
    [
        (
            "engine: signal failure: client error: 401 Unauthorized - invalid token: [redacted], "
            "error: token signature is invalid",
            FailureReason.TRANSPORT_AUTH_FAILED,
        ),
        (
            "engine: signal failure: client error: 401 Unauthorized - invalid authorization token",
            FailureReason.TRANSPORT_AUTH_FAILED,
        ),
        (
            "engine: signal failure: client error: 403 Forbidden",
            FailureReason.TRANSPORT_AUTH_FAILED,
        ),
        (
            "engine: signal failure: transport connection error: IO error: "
            "Connection refused (os error 111)",
            FailureReason.ROOM_UNREACHABLE,
        ),
        ("engine: signal failure: timeout", FailureReason.ROOM_UNREACHABLE),
        ("failed to lookup address information", FailureReason.ROOM_UNREACHABLE),
    ],
)
def test_join_errors_are_classified(message: str, reason: FailureReason) -> None:
    assert classify_connect_error(message) is reason


def test_only_unintended_disconnects_are_rejoined() -> None:
    reasons = rtc.DisconnectReason
    for final in (
        reasons.PARTICIPANT_REMOVED,
        reasons.ROOM_DELETED,
        reasons.DUPLICATE_IDENTITY,
        reasons.CLIENT_INITIATED,
        reasons.ROOM_CLOSED,
    ):
        assert not should_rejoin(final)
    for transient in (
        reasons.SIGNAL_CLOSE,
        reasons.SERVER_SHUTDOWN,
        reasons.CONNECTION_TIMEOUT,
        reasons.MEDIA_FAILURE,
        reasons.UNKNOWN_REASON,
    ):
        assert should_rejoin(transient)


def test_token_claims_are_read_without_verification() -> None:
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYWNlY2FzdC13b3JrZXIifQ.sig"
    assert token_claims(token) == {"sub": "facecast-worker"}
    assert token_claims("garbage") == {}


def test_token_file_must_exist_and_hold_a_token(tmp_path) -> None:  # type: ignore[no-untyped-def]
    (tmp_path / "token").write_text("  abc.def.ghi\n")
    assert read_token(str(tmp_path / "token")) == "abc.def.ghi"
    (tmp_path / "empty").write_text("\n")
    for path in (tmp_path / "empty", tmp_path / "missing"):
        with pytest.raises(WorkerError) as caught:
            read_token(str(path))
        assert caught.value.reason is FailureReason.TRANSPORT_AUTH_FAILED
