"""Managed rooms' pure rules: room names, token grants, and which rooms the sweep deletes."""

from __future__ import annotations

import pytest

from api_shim import managed_rooms as mr
from api_shim.settings import Settings


def test_a_room_names_its_session_and_other_rooms_are_not_ours() -> None:
    room = mr.room_name("sess-01jcz3v7m4q8r2t6w9x0y1z2a3")
    assert mr.session_of_room(room) == "sess-01jcz3v7m4q8r2t6w9x0y1z2a3"
    assert mr.session_of_room("support-42") is None
    assert mr.session_of_room(mr.ROOM_PREFIX) is None


def test_the_viewer_only_subscribes_unless_asked_and_is_short_lived() -> None:
    viewer = mr.client_grant("r", "v", can_publish=False, ttl_seconds=600)
    assert (viewer.can_subscribe, viewer.can_publish, viewer.can_publish_data) == (
        True,
        False,
        False,
    )
    assert viewer.ttl_seconds == 600
    assert not viewer.agent
    assert mr.client_grant("r", "v", can_publish=True, ttl_seconds=60).can_publish
    worker = mr.worker_grant("r", "facecast-worker")
    assert worker.room == "r"
    assert worker.can_publish
    assert worker.agent


def test_the_sweep_deletes_finished_and_orphaned_rooms_only() -> None:
    rooms = [
        mr.RoomSeen(mr.room_name("running"), created_at=0.0),
        mr.RoomSeen(mr.room_name("ended"), created_at=990.0),
        mr.RoomSeen(mr.room_name("gone"), created_at=0.0),
        mr.RoomSeen(mr.room_name("being-made"), created_at=990.0),
        mr.RoomSeen("customer-room", created_at=0.0),
    ]
    doomed = mr.rooms_to_delete(
        rooms, {"running": False, "ended": True}, now=1000.0, grace_seconds=60.0
    )
    assert doomed == [mr.room_name("ended"), mr.room_name("gone")]


def test_managed_rooms_are_off_by_default_and_half_a_configuration_fails() -> None:
    assert Settings().managed_livekit() is None
    with pytest.raises(ValueError, match="MANAGED_LIVEKIT_API_KEY"):
        Settings(managed_livekit_url="wss://lk.example.com")


def test_the_secret_comes_from_its_file_and_is_never_in_a_repr(tmp_path: object) -> None:
    from pathlib import Path

    secret_file = Path(str(tmp_path)) / "api-secret"
    secret_file.write_text("s3cret-of-the-platform-livekit\n")
    settings = Settings(
        managed_livekit_url="wss://lk.example.com",
        managed_livekit_api_key="APIkey",
        managed_livekit_api_secret_file=str(secret_file),
    )
    config = settings.managed_livekit()
    assert config is not None
    assert config.api_secret == "s3cret-of-the-platform-livekit"
    assert config.http_url == "https://lk.example.com"
    assert config.client_url == "wss://lk.example.com"
    assert "s3cret" not in repr(config)
    assert "s3cret" not in repr(settings)
