"""The API's error envelope, `{"error": {"type", "code", "message", "param", "request_id"}}`,
as exceptions: one class per `type`, so callers catch what they can handle."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


class FacecastError(Exception):
    """An error answer from the API. `code` is the stable reason to branch on; `message` is for
    people; `request_id` is what support needs."""

    def __init__(
        self,
        *,
        status: int,
        type: str,
        code: str,
        message: str,
        param: str | None = None,
        request_id: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        super().__init__(f"{status} {type}/{code}: {message} (request {request_id})")
        self.status = status
        self.type = type
        self.code = code
        self.message = message
        self.param = param
        self.request_id = request_id
        # Seconds the API asked to wait before trying again (429 and 503 only).
        self.retry_after = retry_after


class InvalidRequestError(FacecastError):
    """400, 405, 413: a parameter is missing or invalid; `param` names it."""


class AuthenticationError(FacecastError):
    """401: the API key is missing or not valid."""


class PermissionDeniedError(FacecastError):
    """403: your plan does not allow it (`quality_not_allowed`, ...)."""


class NotFoundError(FacecastError):
    """404: no such session or avatar for this API key."""


class ConflictError(FacecastError):
    """409: `idempotency_key_reused`, `session_not_active`, `avatar_in_use`, ..."""


class UnprocessableError(FacecastError):
    """422: valid, but not possible (`max_duration_exceeds_plan`, `quality_not_available`)."""


class RateLimitError(FacecastError):
    """429 `rate_limited`: too many requests per minute."""


class QuotaExceededError(FacecastError):
    """429 `concurrency_limit_reached` or 403 `minutes_exhausted`."""


class InternalServerError(FacecastError):
    """500: quote `request_id` to support."""


class ServiceUnavailableError(FacecastError):
    """503: `at_capacity` or the cluster is not answering; retry after `retry_after`."""


class FacecastConnectionError(Exception):
    """The API could not be reached, or did not answer in time."""


ERROR_TYPES: dict[str, type[FacecastError]] = {
    "invalid_request": InvalidRequestError,
    "authentication": AuthenticationError,
    "permission": PermissionDeniedError,
    "not_found": NotFoundError,
    "conflict": ConflictError,
    "unprocessable": UnprocessableError,
    "rate_limit": RateLimitError,
    "quota_exceeded": QuotaExceededError,
    "internal": InternalServerError,
    "service_unavailable": ServiceUnavailableError,
}
# For answers without the envelope (a proxy's 502 page, say): the class their status implies.
_BY_STATUS: dict[int, type[FacecastError]] = {
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    422: UnprocessableError,
    429: RateLimitError,
    503: ServiceUnavailableError,
}


def error_from_response(
    status: int, body: Any, request_id: str | None, retry_after: float | None
) -> FacecastError:
    """The exception for an error answer; `body` is its parsed JSON (anything, if not JSON)."""
    detail = body.get("error") if isinstance(body, Mapping) else None
    if isinstance(detail, Mapping) and isinstance(detail.get("type"), str):
        type_ = str(detail["type"])
        cls = ERROR_TYPES.get(type_, FacecastError)
        param = detail.get("param")
        return cls(
            status=status,
            type=type_,
            code=str(detail.get("code", "unknown")),
            message=str(detail.get("message", "")),
            param=param if isinstance(param, str) else None,
            request_id=str(detail.get("request_id") or request_id or "") or None,
            retry_after=retry_after,
        )
    fallback = _BY_STATUS.get(status, InternalServerError if status >= 500 else FacecastError)
    return fallback(
        status=status,
        type="unknown",
        code=f"http_{status}",
        message=f"The API answered HTTP {status} without an error body.",
        request_id=request_id,
        retry_after=retry_after,
    )
