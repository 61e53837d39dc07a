"""Settings from the environment, and the log redaction safety net."""

from __future__ import annotations

import io
import json

import pytest
import structlog

from api_shim.auth import generate_api_key
from api_shim.logging import REDACTED, configure_logging
from api_shim.settings import Settings


def test_settings_read_facecast_variables() -> None:
    settings = Settings.from_env(
        {"FACECAST_NAMESPACE": "prod", "FACECAST_MAX_QUEUED": "7", "OTHER": "x"}
    )
    assert (settings.namespace, settings.max_queued) == ("prod", 7)
    assert settings.port == Settings().port


def test_settings_name_the_bad_variable() -> None:
    with pytest.raises(ValueError, match="FACECAST_MAX_QUEUED"):
        Settings.from_env({"FACECAST_MAX_QUEUED": "many"})


def test_logs_are_json_lines_and_secrets_are_redacted(captured_logs: io.StringIO) -> None:
    stream = io.StringIO()
    configure_logging("info", stream)  # on top of the fixture's, which restores the old setup
    key = generate_api_key()
    structlog.contextvars.clear_contextvars()
    structlog.contextvars.bind_contextvars(request_id="req_1")
    log = structlog.get_logger("test")
    log.info("event", token="lk-secret", api_key=key, note=f"sent {key} by mistake", n=1)
    log.debug("hidden")
    structlog.contextvars.clear_contextvars()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 1
    record = json.loads(lines[0])
    assert record["event"] == "event"
    assert record["request_id"] == "req_1"
    assert record["token"] == REDACTED
    assert record["api_key"] == REDACTED
    assert record["note"] == f"sent {REDACTED} by mistake"
    assert "lk-secret" not in lines[0]
    assert key not in lines[0]
