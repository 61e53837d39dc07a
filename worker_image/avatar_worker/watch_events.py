"""What one event of a watch on the worker's AvatarSession means (pure).

The watch is resumed from the last resourceVersion seen (an event's or a bookmark's); a 410
Gone (the version is too old, the API server compacted it away) means: read the session again
and watch from its current version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from avatar_crds.session import AvatarSession

GONE = 410


@dataclass(frozen=True)
class Changed:
    session: AvatarSession
    resource_version: str | None


@dataclass(frozen=True)
class Progress:
    """Nothing to act on (a bookmark, a deletion, an unreadable version): only the position."""

    resource_version: str | None
    note: str = ""


@dataclass(frozen=True)
class Expired:
    """The version to resume from is gone: read the session and watch from there."""


@dataclass(frozen=True)
class Failed:
    message: str


WatchStep = Changed | Progress | Expired | Failed


def interpret(event: Mapping[str, Any]) -> WatchStep:
    kind = event.get("type")
    obj = event.get("object")
    if not isinstance(obj, Mapping):
        return Failed(f"a {kind} event without an object")
    if kind == "ERROR":
        if obj.get("code") == GONE:
            return Expired()
        return Failed(str(obj.get("message") or obj.get("reason") or "watch error"))
    version = _resource_version(obj)
    if kind in ("ADDED", "MODIFIED"):
        try:
            return Changed(AvatarSession.model_validate(obj), version)
        except ValidationError as error:
            return Progress(version, f"unreadable session: {error.error_count()} errors")
    if kind == "DELETED":
        return Progress(version, "the session was deleted")
    return Progress(version)  # BOOKMARK


def _resource_version(obj: Mapping[str, Any]) -> str | None:
    metadata = obj.get("metadata")
    if isinstance(metadata, Mapping):
        version = metadata.get("resourceVersion")
        return str(version) if version else None
    return None
