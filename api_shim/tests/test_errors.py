"""The error envelope and how validation errors become it."""

from __future__ import annotations

import pytest

from api_shim.errors import (
    DEFAULT_STATUS,
    ApiError,
    ErrorEnvelope,
    ErrorType,
    validation_error,
    validation_param,
)


def test_every_type_has_a_status_in_its_family() -> None:
    assert set(DEFAULT_STATUS) == set(ErrorType)
    assert DEFAULT_STATUS[ErrorType.INVALID_REQUEST] == 400
    assert DEFAULT_STATUS[ErrorType.AUTHENTICATION] == 401
    assert DEFAULT_STATUS[ErrorType.SERVICE_UNAVAILABLE] == 503
    assert DEFAULT_STATUS[ErrorType.INTERNAL] == 500


def test_the_envelope_has_exactly_the_five_fields() -> None:
    error = ApiError(ErrorType.NOT_FOUND, "session_not_found", "No session x.", param="id")
    body = error.envelope("req_1")
    assert body == {
        "error": {
            "type": "not_found",
            "code": "session_not_found",
            "message": "No session x.",
            "param": "id",
            "request_id": "req_1",
        }
    }
    ErrorEnvelope.model_validate(body)
    assert error.status == 404
    assert error.headers() == {}


def test_retry_after_becomes_a_header() -> None:
    error = ApiError(ErrorType.RATE_LIMIT, "rate_limited", "slow down", retry_after=7)
    assert error.headers() == {"Retry-After": "7"}


def test_an_explicit_status_overrides_the_family_default() -> None:
    error = ApiError(ErrorType.QUOTA_EXCEEDED, "minutes_exhausted", "none left", status=403)
    assert error.status == 403


@pytest.mark.parametrize(
    ("loc", "param"),
    [
        (("body", "metadata"), "metadata"),
        (("body", "transport", "livekit", "url"), "transport.url"),
        (("body", "transport", "daily", "worker_token"), "transport.worker_token"),
        (("body", "voice", "speed"), "voice.speed"),
        (("body", "metadata", "livekit"), "metadata.livekit"),
        (("query", "limit"), "limit"),
        (("header", "idempotency-key"), "Idempotency-Key"),
        (("body",), None),
        (("body", 12), "12"),
        ((), None),
    ],
)
def test_validation_locations_become_client_side_names(
    loc: tuple[str | int, ...], param: str | None
) -> None:
    assert validation_param(loc) == param


def test_the_first_validation_error_is_reported_with_a_code() -> None:
    error = validation_error(
        [
            {"loc": ("body", "metadata"), "type": "dict_type", "msg": "Input should be a dict"},
            {"loc": ("body", "quality"), "type": "enum", "msg": "bad"},
        ]
    )
    assert (error.status, error.type, error.code, error.param) == (
        400,
        ErrorType.INVALID_REQUEST,
        "invalid_parameter",
        "metadata",
    )
    assert "metadata" in error.message


@pytest.mark.parametrize(
    ("kind", "loc", "code"),
    [
        ("missing", ("body", "quality"), "parameter_missing"),
        ("extra_forbidden", ("body", "colour"), "unknown_parameter"),
        ("json_invalid", ("body", 3), "invalid_json"),
        ("missing", ("body",), "parameter_missing"),
    ],
)
def test_validation_error_codes(kind: str, loc: tuple[str | int, ...], code: str) -> None:
    assert validation_error([{"loc": loc, "type": kind, "msg": "x"}]).code == code


def test_value_error_prefixes_are_dropped_from_messages() -> None:
    error = validation_error(
        [{"loc": ("body", "metadata"), "type": "value_error", "msg": "Value error, too big"}]
    )
    assert error.message == "metadata: too big"
