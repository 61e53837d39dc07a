"""What a call to the API server can end in besides an answer, as types callers can tell
apart: the API server refused (KubeError, by status), or it could not be reached at all.

A refusal carries the HTTP status, its reason and the `message` of the Kubernetes Status in
the reply, except where the reply is about a Secret: that one is never read into an error, as
it may echo the Secret's data."""

from __future__ import annotations

import json
from collections.abc import Awaitable
from typing import Any, TypeVar

T = TypeVar("T")


class KubeError(Exception):
    """The API server answered with an error status."""

    def __init__(self, status: int, reason: str, message: str = "") -> None:
        super().__init__(f"{status} {reason}: {message}" if message else f"{status} {reason}")
        self.status = status
        self.reason = reason
        self.message = message


class NotFoundError(KubeError):
    """404: no such object (or no such kind)."""


class ConflictError(KubeError):
    """409: it already exists, or it changed since the resourceVersion the write named."""


class InvalidError(KubeError):
    """422: the object breaks its schema or a validation rule."""


class ExpiredError(KubeError):
    """410: the resourceVersion to watch from is gone from the API server's history; list
    again."""


class UnreachableError(Exception):
    """No answer: the connection failed, broke or timed out. Nothing is known of whether a
    write took effect."""


_BY_STATUS: dict[int, type[KubeError]] = {
    404: NotFoundError,
    409: ConflictError,
    410: ExpiredError,
    422: InvalidError,
}


def error_of(status: int, reason: str | None, body: bytes, *, about_secret: bool) -> KubeError:
    """The error for a refusal with this reply (`body` unread when `about_secret`)."""
    message = "" if about_secret else status_message(body)
    return _BY_STATUS.get(status, KubeError)(status, reason or "", message)


def error_of_status(status: dict[str, Any]) -> KubeError:
    """The error a watch's ERROR event carries (a Kubernetes Status object)."""
    code = int(status.get("code") or 500)
    return _BY_STATUS.get(code, KubeError)(
        code, str(status.get("reason") or ""), str(status.get("message") or "")
    )


def status_message(body: bytes) -> str:
    """The `message` of a Kubernetes Status reply; empty if the reply is not one."""
    try:
        status = json.loads(body or b"{}")
    except ValueError:
        return ""
    return str(status.get("message") or "") if isinstance(status, dict) else ""


async def absent_ok(call: Awaitable[T]) -> T | None:
    """The call's result, or None if the object is not there (gone already is fine)."""
    try:
        return await call
    except NotFoundError:
        return None


async def exists_ok(call: Awaitable[T]) -> T | None:
    """The call's result, or None if a create found the object there already."""
    try:
        return await call
    except ConflictError:
        return None
