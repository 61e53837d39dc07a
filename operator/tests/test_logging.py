"""The operator's log lines, its own and kopf's, are JSON and never carry a secret."""

from __future__ import annotations

import io
import json
import logging
from collections.abc import Iterator
from typing import Any

import pytest
import structlog

from avatar_crds.redact import REDACTED
from avatar_operator.logging import configure_logging
from testbed.objects import SAMPLE_TOKEN

API_KEY = "fc_" + "k" * 43


@pytest.fixture
def captured() -> Iterator[io.StringIO]:
    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    kopf_level = logging.getLogger("kopf").level
    stream = io.StringIO()
    configure_logging(logging.INFO, stream)
    try:
        yield stream
    finally:
        root.handlers, root.level = handlers, level
        logging.getLogger("kopf").setLevel(kopf_level)
        structlog.reset_defaults()


def lines(stream: io.StringIO) -> list[dict[str, Any]]:
    return [json.loads(line) for line in stream.getvalue().splitlines()]


def test_a_secret_nested_in_an_event_or_in_an_exception_is_redacted(
    captured: io.StringIO,
) -> None:
    log = structlog.get_logger("avatar_operator")
    try:
        raise RuntimeError(f"PATCH refused: {{'token': '{SAMPLE_TOKEN}'}}")
    except RuntimeError:
        log.exception(
            "reconcile_failed",
            session="sess-1",
            pod={"env": [{"name": "TOKEN", "value": SAMPLE_TOKEN}], "args": [f"--key={API_KEY}"]},
            api_key=API_KEY,
        )
    text = captured.getvalue()
    assert SAMPLE_TOKEN not in text
    assert API_KEY not in text
    [event] = lines(captured)
    assert event["session"] == "sess-1"
    assert event["api_key"] == REDACTED
    assert event["pod"] == {
        "env": [{"name": "TOKEN", "value": REDACTED}],
        "args": [f"--key={REDACTED}"],
    }
    assert "RuntimeError: PATCH refused" in event["exception"]
    assert REDACTED in event["exception"]


def test_kopf_records_and_their_tracebacks_are_redacted(captured: io.StringIO) -> None:
    try:
        raise ValueError(f"Authorization: Bearer {API_KEY}")
    except ValueError:
        logging.getLogger("kopf.objects").error(
            "Handler failed with %s", SAMPLE_TOKEN, exc_info=True
        )
    text = captured.getvalue()
    assert SAMPLE_TOKEN not in text
    assert API_KEY not in text
    [event] = lines(captured)
    assert event["event"] == f"Handler failed with {REDACTED}"
    assert "Traceback" in event["exception"]
    assert f"ValueError: Authorization: {REDACTED}" in event["exception"]
