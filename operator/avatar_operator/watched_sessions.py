"""What the operator keeps in memory of each watched session: a summary and the whole, packed.

Scans over every session (admission passes, pool readings, tenant counts, the phase metric)
read a few fields of each; a reconciliation reads one session whole. Kept as parsed JSON, a
bound session's whole body is about 90 objects: 21 MiB for 3,000 sessions
(`bench/pool_binding.py`). So each session is kept as its summary, a dict of the body's own
shape with only `SUMMARY_FIELDS`, which the scans read as they would the body, and the whole
body pickled into one bytes object, unpickled for the session at hand: 4.2 MiB for 3,000.

A scan that reads a field not in `SUMMARY_FIELDS` would find it absent: add the field
here (operator/tests/test_watched_sessions.py runs each scan on summaries and on bodies).
"""

from __future__ import annotations

import pickle
import sys
from collections.abc import Mapping
from typing import Any, TypeAlias

Shape: TypeAlias = dict[str, "str | Shape"]

SHARED = "shared"
"""A value thousands of sessions share: kept once, not once per session."""
KEPT = "kept"

SUMMARY_FIELDS: Shape = {
    "metadata": {
        "name": KEPT,
        "namespace": SHARED,
        "resourceVersion": KEPT,  # which copy is newer; the watch check
        "creationTimestamp": KEPT,  # FIFO order
        "deletionTimestamp": KEPT,
    },
    "spec": {"tenant": SHARED, "quality": SHARED, "avatarRef": KEPT},  # a grant names avatars
    "status": {
        "phase": SHARED,
        "binding": KEPT,
        "finishedAt": KEPT,  # since when a worker is idle
        "worker": {"leftAt": KEPT},
    },
}


class WatchedSession(dict[str, Any]):
    """A session's summary, read as the body is read (for `SUMMARY_FIELDS`), holding the
    whole body packed."""

    __slots__ = ("packed",)
    packed: bytes
    """Pickled: about twice as fast as JSON both ways, and unpickled only here, from what
    this process pickled itself (a watched body, plain JSON data)."""

    def whole(self) -> dict[str, Any]:
        """The whole body, a fresh copy each time."""
        body: dict[str, Any] = pickle.loads(self.packed)
        return body


def watched_session(body: Mapping[str, Any]) -> WatchedSession:
    """What is kept of `body` (a detached copy of a watched session)."""
    summary = WatchedSession(_project(body, SUMMARY_FIELDS))
    summary.packed = pickle.dumps(body, pickle.HIGHEST_PROTOCOL)
    return summary


def _project(source: Mapping[str, Any], shape: Shape) -> dict[str, Any]:
    kept: dict[str, Any] = {}
    for key, inner in shape.items():
        value = source.get(key)
        if value is None:
            continue
        if isinstance(inner, dict):
            if isinstance(value, Mapping) and (projected := _project(value, inner)):
                kept[key] = projected
        elif inner == SHARED and isinstance(value, str):
            kept[key] = sys.intern(value)
        else:
            kept[key] = dict(value) if isinstance(value, Mapping) else value
    return kept
