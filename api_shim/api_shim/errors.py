"""The one error envelope every non-2xx response uses, and the exceptions that produce it.

`{"error": {"code", "message", "param", "request_id", "type"}}`: `type` is a closed set that
decides the HTTP status family, `code` is a stable machine-readable reason within it, `param`
names the offending request field (or header) when there is one.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping, Sequence
from enum import StrEnum
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException


class ErrorType(StrEnum):
    INVALID_REQUEST = "invalid_request"
    AUTHENTICATION = "authentication"
    PERMISSION = "permission"
    NOT_FOUND = "not_found"
    CONFLICT = "conflict"
    UNPROCESSABLE = "unprocessable"
    RATE_LIMIT = "rate_limit"
    QUOTA_EXCEEDED = "quota_exceeded"
    INTERNAL = "internal"
    SERVICE_UNAVAILABLE = "service_unavailable"


# The usual status of each type; a few errors override it (413, 405, 403 minutes_exhausted).
DEFAULT_STATUS: dict[ErrorType, int] = {
    ErrorType.INVALID_REQUEST: 400,
    ErrorType.AUTHENTICATION: 401,
    ErrorType.PERMISSION: 403,
    ErrorType.NOT_FOUND: 404,
    ErrorType.CONFLICT: 409,
    ErrorType.UNPROCESSABLE: 422,
    ErrorType.RATE_LIMIT: 429,
    ErrorType.QUOTA_EXCEEDED: 429,
    ErrorType.INTERNAL: 500,
    ErrorType.SERVICE_UNAVAILABLE: 503,
}


class ErrorDetail(BaseModel):
    model_config = ConfigDict(extra="forbid")

    type: ErrorType
    code: str = Field(description="Stable machine-readable reason, e.g. `session_not_found`.")
    message: str = Field(description="Human-readable explanation; may change between versions.")
    param: str | None = Field(
        default=None, description="The request field or header at fault, dotted (`transport.url`)."
    )
    request_id: str = Field(description="Also in the `X-Request-Id` header; quote it to support.")


class ErrorEnvelope(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "error": {
                        "type": "invalid_request",
                        "code": "invalid_parameter",
                        "message": "metadata: Input should be a valid dictionary",
                        "param": "metadata",
                        "request_id": "req_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
                    }
                }
            ]
        },
    )

    error: ErrorDetail


class ApiError(Exception):
    """Raised anywhere below a route; rendered as the envelope by the app's handler."""

    def __init__(
        self,
        type_: ErrorType,
        code: str,
        message: str,
        *,
        param: str | None = None,
        status: int | None = None,
        retry_after: int | None = None,
    ) -> None:
        super().__init__(message)
        self.type = type_
        self.code = code
        self.message = message
        self.param = param
        self.status = status if status is not None else DEFAULT_STATUS[type_]
        self.retry_after = retry_after

    def headers(self) -> dict[str, str]:
        return {} if self.retry_after is None else {"Retry-After": str(self.retry_after)}

    def envelope(self, request_id: str) -> dict[str, Any]:
        detail = ErrorDetail(
            type=self.type,
            code=self.code,
            message=self.message,
            param=self.param,
            request_id=request_id,
        )
        return ErrorEnvelope(error=detail).model_dump(mode="json")


def invalid_request(code: str, message: str, param: str | None = None) -> ApiError:
    return ApiError(ErrorType.INVALID_REQUEST, code, message, param=param)


def not_found(code: str, message: str, param: str | None = None) -> ApiError:
    return ApiError(ErrorType.NOT_FOUND, code, message, param=param)


def authentication_failed(message: str) -> ApiError:
    return ApiError(ErrorType.AUTHENTICATION, "invalid_api_key", message)


def request_too_large(message: str) -> ApiError:
    return ApiError(ErrorType.INVALID_REQUEST, "request_too_large", message, status=413)


class BodyRefusedError(StarletteHTTPException):
    """An ApiError met while a request's body is read. FastAPI lets only HTTPExceptions out of
    its body reading (anything else becomes a bare 400), so the error travels inside one."""

    def __init__(self, error: ApiError) -> None:
        super().__init__(error.status, error.message)
        self.error = error


def internal_error() -> ApiError:
    # Never echo the cause: it may hold cluster details; the request id leads to the log line.
    return ApiError(ErrorType.INTERNAL, "internal_error", "Something went wrong on our side.")


def service_unavailable(code: str, message: str, retry_after: int) -> ApiError:
    return ApiError(ErrorType.SERVICE_UNAVAILABLE, code, message, retry_after=retry_after)


# --- request validation -> envelope ------------------------------------------------------------

# Where pydantic says the problem is; headers are named as clients write them.
_PARAM_LOCATIONS = frozenset({"body", "query", "path"})
# Tags of discriminated unions appear in error locations; clients never wrote them.
_UNION_TAGS = {"livekit", "daily"}


def validation_param(loc: Sequence[str | int]) -> str | None:
    """`("body", "transport", "livekit", "url")` -> `"transport.url"`; None for the body itself."""
    if not loc:
        return None
    where, *path = loc
    if where == "header" and path:
        return "-".join(part.capitalize() for part in str(path[0]).split("-"))
    parts = [str(part) for index, part in enumerate(path) if not _is_union_tag(path, index)]
    if where not in _PARAM_LOCATIONS or not parts:
        return None
    return ".".join(parts)


def _is_union_tag(path: Sequence[str | int], index: int) -> bool:
    return index > 0 and path[index - 1] == "transport" and path[index] in _UNION_TAGS


_CODE_BY_PYDANTIC_TYPE = {
    "missing": "parameter_missing",
    "extra_forbidden": "unknown_parameter",
    "json_invalid": "invalid_json",
}


def validation_error(errors: Sequence[Mapping[str, Any]]) -> ApiError:
    """The first pydantic error, as a 400 naming the field; clients fix one thing at a time."""
    if not errors:
        return invalid_request("invalid_request", "The request is invalid.")
    first = errors[0]
    param = validation_param(tuple(first.get("loc", ())))
    kind = str(first.get("type", ""))
    code = _CODE_BY_PYDANTIC_TYPE.get(kind, "invalid_parameter")
    reason = str(first.get("msg", "is invalid")).removeprefix("Value error, ")
    if kind == "json_invalid":
        message = "The request body is not valid JSON."
    elif kind == "missing" and param is None:
        message = "A JSON request body is required."
    elif param is None:
        message = f"The request body is invalid: {reason}"
    else:
        message = f"{param}: {reason}"
    return invalid_request(code, message, param)


# --- FastAPI handlers ----------------------------------------------------------------------------


def request_id_of(request: Request) -> str:
    """Set by the request-id middleware on every request before any handler runs."""
    return str(getattr(request.state, "request_id", "req_unknown"))


def error_response(error: ApiError, request_id: str) -> JSONResponse:
    return JSONResponse(
        status_code=error.status, content=error.envelope(request_id), headers=error.headers()
    )


async def _on_api_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, ApiError)
    return error_response(exc, request_id_of(request))


async def _on_validation_error(request: Request, exc: Exception) -> JSONResponse:
    assert isinstance(exc, RequestValidationError)
    return error_response(validation_error(exc.errors()), request_id_of(request))


async def _on_http_error(request: Request, exc: Exception) -> JSONResponse:
    """Starlette's own errors (unknown route, wrong method) in the same envelope, and ours
    from reading a body (BodyRefusedError) as they are."""
    assert isinstance(exc, StarletteHTTPException)
    if isinstance(exc, BodyRefusedError):
        return error_response(exc.error, request_id_of(request))
    if exc.status_code == 404:
        error = not_found("route_not_found", f"No route {request.method} {request.url.path}.")
    elif exc.status_code == 405:
        error = ApiError(
            ErrorType.INVALID_REQUEST,
            "method_not_allowed",
            f"{request.method} is not allowed on {request.url.path}.",
            status=405,
        )
    elif exc.status_code >= 500:
        error = internal_error()
    else:
        error = invalid_request("invalid_request", str(exc.detail))
        error.status = exc.status_code
    response = error_response(error, request_id_of(request))
    if exc.headers:
        response.headers.update(exc.headers)
    if exc.status_code == 405:
        allowed = documented_methods(request)
        if allowed:
            response.headers["Allow"] = ", ".join(allowed)
    return response


def documented_methods(request: Request) -> list[str]:
    """The methods the OpenAPI document lists for this request's path. Starlette's own `Allow`
    names only those of the first route whose path matched, but one path may be served by
    several routes (GET and DELETE /v1/sessions/{id})."""
    document: dict[str, Any] = request.app.openapi()
    path = str(request.scope.get("path", ""))
    methods: set[str] = set()
    for template, item in document.get("paths", {}).items():
        if _path_regex(template).fullmatch(path):
            methods.update(method.upper() for method in item if method in _HTTP_METHODS)
    return sorted(methods)


_HTTP_METHODS = frozenset({"get", "put", "post", "delete", "options", "head", "patch", "trace"})


@functools.lru_cache(maxsize=256)
def _path_regex(template: str) -> re.Pattern[str]:
    """`/v1/sessions/{session_id}` -> a regex matching one path segment per parameter."""
    parts = re.split(r"(\{[^}/]+\})", template)
    return re.compile(
        "".join("[^/]+" if part.startswith("{") else re.escape(part) for part in parts)
    )


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(ApiError, _on_api_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
