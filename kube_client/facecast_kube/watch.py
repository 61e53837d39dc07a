"""A watch stream's lines as events: one JSON object per line, `{"type", "object"}`. An ERROR
event ends the stream as the error its Status names (410: ExpiredError, list again)."""

from __future__ import annotations

import json
from typing import Any, NamedTuple

from facecast_kube.errors import error_of_status

# aiohttp reads lines of up to twice its read buffer. Each watch event is one line, and an
# object may be as large as etcd stores (1.5 MiB by default) and more in JSON: leave room.
WATCH_READ_BUFFER_BYTES = 4 * 1024 * 1024


class WatchEvent(NamedTuple):
    type: str  # ADDED, MODIFIED, DELETED or BOOKMARK
    object: dict[str, Any]


def parse_event(line: bytes) -> WatchEvent | None:
    """The event on this line; None for a blank line."""
    if not line.strip():
        return None
    event = as_object(json.loads(line))
    kind, raw = str(event.get("type")), as_object(event.get("object"))
    if kind == "ERROR":
        raise error_of_status(raw)
    return WatchEvent(kind, raw)


def as_object(raw: object) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise TypeError(f"expected a JSON object from the API server, got {type(raw).__name__}")
    return raw
