from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest

from avatar_crds import contract
from avatar_crds.enums import FailureReason, Quality
from avatar_worker.config import (
    FileSessionSource,
    WorkerConfig,
    image_path,
    parse_session,
    read_avatar_image,
)
from avatar_worker.errors import WorkerError
from worker_image.tests.support import AVATAR_NAME, session_resource, write_astronaut_avatar


def test_config_from_the_pod_environment() -> None:
    config = WorkerConfig.from_env(
        [],
        {
            contract.ENV_SESSION_NAME: "sess-x",
            contract.ENV_SESSION_NAMESPACE: "tenant-a",
            contract.ENV_TOKEN_FILE: "/run/token",
            contract.ENV_AVATAR_STORE: "/data/avatars",
        },
    )
    assert (config.session_name, config.namespace) == ("sess-x", "tenant-a")
    assert (config.token_file, config.avatar_store) == ("/run/token", "/data/avatars")
    assert config.uses_kubernetes
    assert config.heartbeat_s == contract.WORKER_HEARTBEAT_SECONDS


def test_config_defaults_follow_the_contract() -> None:
    config = WorkerConfig.from_env([], {})
    assert config.token_file == contract.token_file()
    assert config.avatar_store == contract.AVATAR_STORE_DIR


def test_cli_flags_override_the_environment() -> None:
    config = WorkerConfig.from_env(
        ["--session-file", "s.json", "--token-file", "t", "--join-deadline-seconds", "2.5"],
        {contract.ENV_TOKEN_FILE: "/run/token"},
    )
    assert config.session_file == "s.json"
    assert config.token_file == "t"
    assert config.join_deadline_s == 2.5
    assert not config.uses_kubernetes


def test_session_file_may_hold_the_resource_or_just_its_spec(tmp_path: Path) -> None:
    session = session_resource(url="ws://127.0.0.1:1", room="r", quality=Quality.LITE)
    whole = parse_session(session.to_k8s())
    only_spec = parse_session(session.spec.to_k8s())
    assert whole.spec == only_spec.spec == session.spec
    assert whole.metadata.name == session.metadata.name
    path = tmp_path / "session.json"
    path.write_text(json.dumps(session.to_k8s()))
    source = FileSessionSource(str(path), None)
    assert source.session().spec.quality is Quality.LITE
    assert source.current_status() is not None
    with pytest.raises(WorkerError) as caught:
        source.avatar(AVATAR_NAME)
    assert caught.value.reason is FailureReason.AVATAR_NOT_FOUND


def test_avatar_image_is_read_from_the_store_and_checked(tmp_path: Path) -> None:
    avatar = write_astronaut_avatar(tmp_path)
    data = read_avatar_image(avatar, str(tmp_path))
    assert hashlib.sha256(data).hexdigest() == avatar.image.sha256
    (tmp_path / avatar.image.uri).write_bytes(b"tampered")
    with pytest.raises(WorkerError) as caught:
        read_avatar_image(avatar, str(tmp_path))
    assert caught.value.reason is FailureReason.AVATAR_UNREADABLE
    (tmp_path / avatar.image.uri).unlink()
    with pytest.raises(WorkerError) as caught:
        read_avatar_image(avatar, str(tmp_path))
    assert caught.value.reason is FailureReason.AVATAR_UNREADABLE


def test_image_locations(tmp_path: Path) -> None:
    assert image_path("file:///data/a%20b.jpg", str(tmp_path)) == Path("/data/a b.jpg")
    assert image_path("av-1/face.jpg", str(tmp_path)) == tmp_path.resolve() / "av-1" / "face.jpg"
    for bad in ("../../etc/passwd", "s3://bucket/key.jpg"):
        with pytest.raises(WorkerError) as caught:
            image_path(bad, str(tmp_path))
        assert caught.value.reason is FailureReason.AVATAR_UNREADABLE
