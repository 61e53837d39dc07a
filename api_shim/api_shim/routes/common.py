"""OpenAPI descriptions of the error responses each route can give."""

from __future__ import annotations

from typing import Any

from api_shim.errors import ErrorEnvelope

_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}
_DESCRIPTIONS = {
    400: "invalid_request: a parameter is missing or invalid; `param` names it.",
    401: "authentication: the API key is missing or not valid.",
    403: "permission (`quality_not_allowed`) or quota_exceeded (`minutes_exhausted`).",
    404: "not_found: no such session (or avatar) for this API key.",
    409: "conflict: `idempotency_key_reused`, or the session is no longer active.",
    413: "invalid_request (`request_too_large`): the body is too large.",
    422: "unprocessable: valid, but not possible (`max_duration_exceeds_plan`).",
    429: (
        "rate_limit (`rate_limited`, `speech_queue_full`) or quota_exceeded"
        " (`concurrency_limit_reached`)."
    ),
    500: "internal: quote the request id to support.",
    503: "service_unavailable: `at_capacity`, or the cluster is not answering.",
}


def error_responses(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """The listed statuses plus 500/503 (always possible) and a `default` for the rest
    (405, 413), all in the error envelope."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status in sorted({*statuses, 500, 503}):
        response: dict[str, Any] = {"model": ErrorEnvelope, "description": _DESCRIPTIONS[status]}
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    responses["default"] = {"model": ErrorEnvelope, "description": "Any other error."}
    return responses
