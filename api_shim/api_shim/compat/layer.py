"""What every compatibility service is made of, and the pure pieces they share.

A service is a router under `/compat/<name>` (one OpenAPI tag) plus one pure function that
turns Facecast's error (status and `{"error": {...}}` envelope) into that service's status and
body. The routes are thin: they translate the service's request into a `CreateSessionRequest`,
call the same SessionService as `/v1`, and translate the result back. Errors are translated in
one place, ErrorTranslationMiddleware, whatever raised them (the API key check, the rate
limit, the body limits, request validation or the session service), so a route never needs
its own error handling.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from fastapi import APIRouter
from pydantic import BaseModel, ValidationError
from starlette.types import Scope

from api_shim.auth import Principal
from api_shim.deps import Services
from api_shim.errors import ApiError, ErrorDetail, validation_error

PREFIX = "/compat"


@dataclass(frozen=True)
class TranslatedError:
    status: int
    body: dict[str, Any]


# Facecast's error (its HTTP status and envelope detail) -> the service's status and body.
ErrorTranslator = Callable[[int, ErrorDetail], TranslatedError]
# A service's own credential (Kaltura's `KS` header, its session token): the request's scope
# to the caller, run by AuthenticationMiddleware before the body is read.
ServiceAuthenticate = Callable[[Services, Scope], Awaitable[Principal]]


@dataclass(frozen=True)
class CompatService:
    """One hosted service whose clients Facecast accepts unchanged but for base URL and key."""

    name: str  # the path segment: /compat/<name>/...
    title: str
    description: str
    router: APIRouter
    translate_error: ErrorTranslator
    # POST paths that may carry an inline image, allowed the image body limit.
    image_paths: tuple[str, ...] = ()
    # Caller dependencies of its own (instead of `deps.authenticated`, the Facecast key) and
    # how the middleware authenticates each.
    authenticators: Mapping[Callable[..., Any], ServiceAuthenticate] = field(default_factory=dict)

    @property
    def prefix(self) -> str:
        return f"{PREFIX}/{self.name}"

    @property
    def tag(self) -> str:
        return f"compat: {self.title}"

    def owns(self, path: str) -> bool:
        return path == self.prefix or path.startswith(f"{self.prefix}/")


def service_for(services: Sequence[CompatService], path: str) -> CompatService | None:
    return next((service for service in services if service.owns(path)), None)


def rename_params(error: ErrorDetail, names: Mapping[str, str]) -> ErrorDetail:
    """The error with Facecast's field names (`transport.url`) replaced by the service's
    (`room.url`), in `param` and where the message quotes them."""
    param = error.param
    message = error.message
    # Longest first, so that `transport.url` is not half-replaced by a shorter `transport`.
    for ours in sorted(names, key=len, reverse=True):
        message = message.replace(ours, names[ours])
        if param is not None and (param == ours or param.startswith(f"{ours}.")):
            param = names[ours] + param[len(ours) :]
    return error.model_copy(update={"param": param, "message": message})


def invalid_translation(error: ValidationError) -> ApiError:
    """A request the service's schema accepted but Facecast's refused, as the 400 that
    request validation gives, naming Facecast's field (the service renames it)."""
    return validation_error(
        [{**item, "loc": ("body", *item["loc"])} for item in error.errors(include_input=False)]
    )


_RETRY_AFTER = {
    "Retry-After": {
        "description": "Seconds to wait before retrying.",
        "schema": {"type": "integer", "minimum": 1},
    }
}


def error_responses(
    model: type[BaseModel], descriptions: Mapping[int, str]
) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses of a compatibility route: each status in the service's error body,
    Retry-After on 429 and 503, and a `default` (with which FastAPI adds no 422 of its own,
    which a service may not answer)."""
    responses: dict[int | str, dict[str, Any]] = {}
    for status, description in sorted(descriptions.items()):
        response: dict[str, Any] = {"model": model, "description": description}
        if status in (429, 503):
            response["headers"] = _RETRY_AFTER
        responses[status] = response
    responses["default"] = {"model": model, "description": "Any other error."}
    return responses
