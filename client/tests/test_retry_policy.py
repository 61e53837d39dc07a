"""The pure parts: when to retry and for how long, Retry-After in both its forms, and answers
that are not the API's envelope (a proxy's error page)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

import facecast
from facecast.errors import error_from_response
from facecast.retries import RetryPolicy, parse_retry_after


def test_retry_after_wins_attempts_are_bounded_and_long_waits_are_given_up_on() -> None:
    policy = RetryPolicy(max_attempts=3, max_wait=10.0, backoff=0.5)
    assert policy.wait_before_retry(1, 503, 4.0) == 4.0
    assert policy.wait_before_retry(2, 429, None) == 1.0  # 0.5 * 2
    assert policy.wait_before_retry(3, 503, 1.0) is None  # the third attempt was the last
    assert policy.wait_before_retry(1, 503, 11.0) is None
    for status in (400, 409, 500):
        assert policy.wait_before_retry(1, status, 1.0) is None
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(max_attempts=0)


def test_retry_after_as_seconds_or_an_http_date() -> None:
    now = datetime(2026, 12, 2, 18, 0, 0, tzinfo=UTC)
    assert parse_retry_after("5") == 5.0
    assert parse_retry_after("Wed, 02 Dec 2026 18:00:07 GMT", now) == 7.0
    assert parse_retry_after("Wed, 02 Dec 2026 17:00:00 GMT", now) == 0.0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_an_answer_without_the_envelope_still_raises_by_status() -> None:
    gateway = error_from_response(502, "<html>Bad Gateway</html>", "req_1", None)
    assert isinstance(gateway, facecast.InternalServerError)
    assert (gateway.status, gateway.code, gateway.request_id) == (502, "http_502", "req_1")
    busy = error_from_response(503, None, None, 3.0)
    assert isinstance(busy, facecast.ServiceUnavailableError)
    assert busy.retry_after == 3.0
    unknown = error_from_response(
        400, {"error": {"type": "brand_new", "code": "x", "message": "m"}}, None, None
    )
    assert type(unknown) is facecast.FacecastError
    assert unknown.type == "brand_new"
