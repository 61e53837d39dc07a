"""Pure: is a watch still following the API server?

A watch that stalls says nothing, so silence cannot tell a deaf watch from a quiet cluster.
Instead the operator LISTs what it watches now and then, and checks that its watched copy
catches up with each listing: every object listed must show up at that resourceVersion or
newer, unless it has been deleted since. A listing not caught up within the deadline means
the watch missed a change, however quiet the stream looks.
"""

from __future__ import annotations

from collections.abc import Mapping, Set
from dataclasses import dataclass, field

ObjectKey = tuple[str, str]
"""(namespace, name); the namespace is empty for cluster-scoped objects."""


@dataclass(frozen=True)
class Listing:
    """Each object's resourceVersion in one LIST, and when (monotonic seconds) it came back."""

    at: float
    versions: Mapping[ObjectKey, int]


def caught_up(listing: Listing, seen: Mapping[ObjectKey, int], present: Set[ObjectKey]) -> bool:
    """The watched copy (`seen`) holds every listed object at that version or newer, except
    objects no longer `present` in the newest listing (deleted since: nothing left to see)."""
    return all(
        seen.get(key, -1) >= version or key not in present
        for key, version in listing.versions.items()
    )


@dataclass
class Freshness:
    """One watched resource: the oldest listing its watch has not caught up with yet.

    Intermediate listings are not kept: once a newer listing is caught up, so is every
    older one, so the oldest pending and the newest are enough (the age reported may be
    one listing interval short, never longer than the truth)."""

    deadline: float
    oldest_pending: Listing | None = None
    newest: Listing | None = None
    _present: frozenset[ObjectKey] = field(default_factory=frozenset)

    def listed(self, listing: Listing, seen: Mapping[ObjectKey, int]) -> None:
        self.newest = listing
        self._present = frozenset(listing.versions)
        if self.oldest_pending is None:
            self.oldest_pending = listing
        self.lag(listing.at, seen)

    def lag(self, now: float, seen: Mapping[ObjectKey, int]) -> float:
        """Seconds since the oldest listing the watch has still not caught up with (0: none)."""
        if self.oldest_pending is not None and caught_up(self.oldest_pending, seen, self._present):
            newest = self.newest
            caught = newest is None or caught_up(newest, seen, self._present)
            self.oldest_pending = None if caught else newest
        return 0.0 if self.oldest_pending is None else max(0.0, now - self.oldest_pending.at)

    def deaf(self, now: float, seen: Mapping[ObjectKey, int]) -> bool:
        return self.lag(now, seen) > self.deadline
