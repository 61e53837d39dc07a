from __future__ import annotations

import io
import json
import logging

from avatar_worker import logging as worker_logging


def test_logs_are_json_lines_bound_to_the_session_and_never_show_a_token() -> None:
    stream = io.StringIO()
    worker_logging.configure("INFO", stream)
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJ3b3JrZXIifQ.c2lnbmF0dXJlLXNpZ25hdHVyZQ"
    worker_logging.add_secret("opaque-secret-value")
    worker_logging.bind_session("tenant-a", "sess-1")
    try:
        log = worker_logging.get_logger("test")
        log.info("joined", detail=f"token={token}", nested={"list": [token]})
        # The LiveKit SDK logs through the stdlib `livekit` logger, sometimes with the token in it.
        logging.getLogger("livekit").error("401 Unauthorized - invalid token: %s", token)
        logging.getLogger("livekit").warning("secret is opaque-secret-value")
    finally:
        worker_logging.unconfigure()
    lines = stream.getvalue().splitlines()
    assert len(lines) == 3
    events = [json.loads(line) for line in lines]
    assert all(
        event["session"] == "sess-1" and event["namespace"] == "tenant-a" for event in events
    )
    assert events[0]["event"] == "joined"
    assert events[0]["level"] == "info"
    assert events[1]["logger"] == "livekit"
    assert events[1]["level"] == "error"
    text = stream.getvalue()
    assert token not in text
    assert "eyJ" not in text
    assert "opaque-secret-value" not in text
    assert text.count(worker_logging.REDACTED) == 4


def test_redact_keeps_ordinary_text() -> None:
    assert (
        worker_logging.redact("room r joined by facecast-worker")
        == "room r joined by facecast-worker"
    )


def test_exception_text_and_fields_named_like_secrets_are_redacted() -> None:
    stream = io.StringIO()
    worker_logging.configure("INFO", stream)
    api_key = "fc_" + "q" * 43
    try:
        log = worker_logging.get_logger("test")
        try:
            raise RuntimeError(f"connect failed: Authorization: Bearer {api_key}")
        except RuntimeError:
            log.exception("worker crashed", livekit={"api_secret": "lk-opaque", "url": "ws://x"})
    finally:
        worker_logging.unconfigure()
    text = stream.getvalue()
    assert api_key not in text
    assert "lk-opaque" not in text
    [event] = [json.loads(line) for line in text.splitlines()]
    assert event["livekit"] == {"api_secret": worker_logging.REDACTED, "url": "ws://x"}
    assert (
        f"RuntimeError: connect failed: Authorization: {worker_logging.REDACTED}"
        in (event["exception"])
    )
