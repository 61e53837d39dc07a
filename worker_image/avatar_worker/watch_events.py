"""What one event of a watch on one named object (the worker's AvatarSession, a pool worker's
grant) means (pure).

The watch is resumed from the last resourceVersion seen (an event's or a bookmark's); a 410
Gone (the version is too old, the API server compacted it away) means: read the object again
and watch from its current version.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

from pydantic import ValidationError

from avatar_crds.session import AvatarSession

GONE = 410

T = TypeVar("T")


@dataclass(frozen=True)
class Changed(Generic[T]):
    value: T
    resource_version: str | None


@dataclass(frozen=True)
class Progress:
    """Nothing to act on (a bookmark, a deletion, an unreadable version): only the position."""

    resource_version: str | None
    note: str = ""


@dataclass(frozen=True)
class Expired:
    """The version to resume from is gone: read the object and watch from there."""


@dataclass(frozen=True)
class Failed:
    message: str


WatchStep = Changed[T] | Progress | Expired | Failed


def interpret(event: Mapping[str, Any]) -> WatchStep[AvatarSession]:
    """An event of the watch on the worker's AvatarSession."""
    return interpret_as(event, AvatarSession.model_validate)


def interpret_as(event: Mapping[str, Any], parse: Callable[[Mapping[str, Any]], T]) -> WatchStep[T]:
    """An event of a watch on one object, read with `parse` (a ValueError: unreadable)."""
    kind = event.get("type")
    obj = event.get("object")
    if not isinstance(obj, Mapping):
        return Failed(f"a {kind} event without an object")
    if kind == "ERROR":
        if obj.get("code") == GONE:
            return Expired()
        return Failed(str(obj.get("message") or obj.get("reason") or "watch error"))
    version = resource_version(obj)
    if kind in ("ADDED", "MODIFIED"):
        try:
            return Changed(parse(obj), version)
        except ValidationError as error:
            return Progress(version, f"unreadable object: {error.error_count()} errors")
        except ValueError as error:
            return Progress(version, f"unreadable object: {error}")
    if kind == "DELETED":
        return Progress(version, "the object was deleted")
    return Progress(version)  # BOOKMARK


def resource_version(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        version = metadata.get("resourceVersion")
        return str(version) if version else None
    return None
