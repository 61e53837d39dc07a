"""Settings from the environment, and the log redaction safety net."""

from __future__ import annotations

import io
import json
import logging

import pytest
import structlog

from api_shim.auth import generate_api_key
from api_shim.logging import configure_logging
from api_shim.settings import Settings
from avatar_crds.redact import REDACTED

TOKEN = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"


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


def test_secrets_nested_deep_or_in_exception_text_are_redacted(captured_logs: io.StringIO) -> None:
    """The shallow pass this replaced looked only at top-level strings, before the traceback
    was rendered: a key in a nested header dict or in an exception message went out as is."""
    key = generate_api_key()
    log = structlog.get_logger("test")
    try:
        raise RuntimeError(f"kubernetes said: Secret data {{'token': '{TOKEN}'}} for {key}")
    except RuntimeError:
        log.exception(
            "request_failed",
            request={"headers": {"x-api-key": key}, "body": [{"transport": {"token": TOKEN}}]},
            detail=[f"Authorization: Bearer {key}"],
        )
    text = captured_logs.getvalue()
    assert TOKEN not in text
    assert key not in text
    [record] = [json.loads(line) for line in text.splitlines()]
    assert record["request"] == {
        "headers": {"x-api-key": REDACTED},
        "body": [{"transport": {"token": REDACTED}}],
    }
    assert record["detail"] == [f"Authorization: {REDACTED}"]
    assert "Traceback" in record["exception"]
    assert (
        f"RuntimeError: kubernetes said: Secret data {{'token': '{REDACTED}'}} for {REDACTED}"
        in (record["exception"])
    )


def test_standard_library_records_and_their_tracebacks_are_redacted(
    captured_logs: io.StringIO,
) -> None:
    """uvicorn and the kubernetes client log through the standard library."""
    try:
        raise ValueError(f"bad header Bearer {TOKEN}")
    except ValueError:
        logging.getLogger("uvicorn.error").error(
            "Exception in ASGI application %s", TOKEN, exc_info=True
        )
    text = captured_logs.getvalue()
    assert TOKEN not in text
    [record] = [json.loads(line) for line in text.splitlines()]
    assert record["event"] == f"Exception in ASGI application {REDACTED}"
    assert f"ValueError: bad header Bearer {REDACTED}" in record["exception"]
