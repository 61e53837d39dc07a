"""The plugin's settings and the worker token it mints (no network)."""

from __future__ import annotations

import jwt
import pytest
from livekit.plugins import facecast
from livekit.plugins.facecast.avatar import worker_token

SECRET = "s" * 32


def test_worker_token_joins_only_this_room_and_speaks_for_the_agent() -> None:
    token = worker_token(
        api_key="APIkey",
        api_secret=SECRET,
        room_name="room-1",
        identity="facecast-avatar-agent",
        name="Avatar",
        agent_identity="agent-AJ_1",
    )
    claims = jwt.decode(token, SECRET, algorithms=["HS256"])
    assert claims["iss"] == "APIkey"
    assert claims["sub"] == "facecast-avatar-agent"
    assert claims["kind"] == "agent"
    assert claims["attributes"] == {"lk.publish_on_behalf": "agent-AJ_1"}
    assert claims["video"]["room"] == "room-1"
    assert claims["video"]["roomJoin"] is True
    assert not claims["video"].get("roomAdmin")


def test_settings_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FACECAST_AVATAR_ID", "av_01")
    monkeypatch.setenv("FACECAST_API_URL", "http://127.0.0.1:1")
    monkeypatch.setenv("FACECAST_API_KEY", "fc_x")
    avatar = facecast.AvatarSession()
    assert avatar.avatar_identity == "facecast-avatar-agent"
    assert avatar.provider == "facecast"
    assert avatar.session_id is None


@pytest.mark.parametrize("missing", ["FACECAST_AVATAR_ID", "FACECAST_API_URL", "FACECAST_API_KEY"])
def test_a_missing_setting_is_refused_at_once(
    monkeypatch: pytest.MonkeyPatch, missing: str
) -> None:
    for variable in ("FACECAST_AVATAR_ID", "FACECAST_API_URL", "FACECAST_API_KEY"):
        monkeypatch.setenv(variable, "set")
    monkeypatch.delenv(missing)
    with pytest.raises(facecast.FacecastException, match=missing):
        facecast.AvatarSession()


def test_an_argument_wins_over_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("FACECAST_API_KEY", raising=False)
    monkeypatch.setenv("FACECAST_AVATAR_ID", "av_env")
    avatar = facecast.AvatarSession(
        avatar_id="av_arg", api_url="http://127.0.0.1:1", api_key="fc_arg"
    )
    assert avatar._avatar_id == "av_arg"
