"""Admission for POST /v1/sessions without listing every session on every create.

The tenant's concurrency limit and the namespace's queue length are checked against an
in-memory index of the namespace's AvatarSessions, kept by a LIST then WATCH on the event loop
(an informer), plus the sessions this process is creating right now ("pending"), which
the watch may not have reported yet. Checking and reserving happen in one step without
awaiting, so two concurrent requests in this process can never both take the last slot.

The index may be a moment behind the cluster. It can only over-count (a session that just
ended or was deleted still counts), never miss one of this process's own creates; so a
refusal is confirmed with a fresh LIST before it is given, and anything that lets a request
through is as safe as the LIST it replaces. While the watch is not in sync (starting, after
an error, without RBAC `watch`), every admission uses the LIST, as before the index existed.
Across replicas the operator's admission control is what finally holds the line.

Views taken at different times combine soundly because a session's stages only move
forward: once it stops holding a concurrency slot (terminal or being deleted) or stops
waiting (past `queued`), it never does again; a session counts only if no view says it has
moved on.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api_shim import mapping
from api_shim.errors import ApiError
from api_shim.informer import WatchedIndex, WatchSource
from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.session import AvatarSession

SELECTOR = f"{contract.LABEL_MANAGED_BY}={contract.MANAGED_BY}"
# A create this process finished is trusted to the watch (or to a LIST started later) to
# report. Should neither ever do so (a delete in a watch gap), it stops counting after this.
PENDING_GRACE_SECONDS = 60.0


@dataclass(frozen=True)
class Entry:
    tenant: str
    holds: bool  # holds one of the tenant's concurrency slots
    waiting: bool  # waits for a worker: counts against the namespace's queue

    @classmethod
    def of(cls, session: AvatarSession) -> Entry:
        return cls(
            tenant=session.spec.tenant,
            holds=mapping.holds_concurrency(session),
            waiting=mapping.is_waiting(session),
        )

    def merged(self, other: Entry) -> Entry:
        """Two views of one session: whichever has seen it move on is right."""
        return Entry(self.tenant, self.holds and other.holds, self.waiting and other.waiting)


@dataclass(frozen=True)
class Counts:
    active: int  # the tenant's sessions holding a slot
    waiting: int  # the namespace's sessions waiting for a worker


@dataclass
class _Pending:
    """A create of this process. It counts until it is both finished and known elsewhere: to
    the watch (or a relist), and to every LIST that admissions are still waiting for (those
    that began after it finished)."""

    tenant: str
    done_at: float | None = None  # when its create returned; None while in flight
    seen: bool = False  # the watch or a relist has reported it (or its deletion)


Check = Callable[[Counts], None]  # raises ApiError to refuse


class SessionIndex(WatchedIndex):
    def __init__(
        self, source: WatchSource | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Everything runs on the event loop, so a check and its reservation, with no await
        between them, are one atomic step."""
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._active: dict[str, int] = {}  # by tenant: entries holding a slot
        self._waiting = 0  # entries waiting for a worker
        self._pending: dict[str, _Pending] = {}
        self._listings: list[float] = []  # start times of the admission LISTs in flight
        super().__init__(source, AVATAR_SESSION.plural, label_selector=SELECTOR, clock=clock)

    # --- admission -----------------------------------------------------------------------------

    @asynccontextmanager
    async def admit(
        self,
        tenant: str,
        name: str,
        check: Check,
        list_sessions: Callable[[], Awaitable[list[AvatarSession]]],
    ) -> AsyncIterator[None]:
        """Reserve a place for session `name` if `check` allows it, for the duration of the
        block, which creates it. Raises what `check` raises if it refuses."""
        self.start()
        if not self._try_admit(tenant, name, check):
            # Not in sync, or the index says no: ask the API server, as without an index.
            listed_at = self._clock()
            self._listings.append(listed_at)
            try:
                listed = await list_sessions()
                check(self._counts(tenant, listed, listed_at))
                self._pending[name] = _Pending(tenant)
            finally:
                self._listings.remove(listed_at)
        try:
            yield
        except asyncio.CancelledError:
            # The caller went away, but a shielded create may still go on: count it as if
            # it had been made.
            self._finished(name)
            raise
        except BaseException:
            self._pending.pop(name, None)
            raise
        self._finished(name)

    def _finished(self, name: str) -> None:
        pending = self._pending.get(name)
        if pending is not None:
            pending.done_at = self._clock()

    def _try_admit(self, tenant: str, name: str, check: Check) -> bool:
        if not self._synced:
            return False
        try:
            check(self._counts(tenant, None, None))
        except ApiError:
            return False
        self._pending[name] = _Pending(tenant)
        return True

    def counts(self, tenant: str) -> Counts | None:
        """What the index says now; None while it is not in sync."""
        return self._counts(tenant, None, None) if self._synced else None

    def _counts(
        self, tenant: str, listed: Iterable[AvatarSession] | None, listed_at: float | None
    ) -> Counts:
        """From `listed` (a LIST started at `listed_at`) if given, else from the index; plus
        this process's creates that the source may not know of yet."""
        self._forget_settled()
        if listed is None:
            # Kept up to date entry by entry, so a create costs the same at any session count.
            active, waiting = self._active.get(tenant, 0), self._waiting
            known: Mapping[str, Entry] = self._entries
        else:
            known = {session.metadata.name or "": Entry.of(session) for session in listed}
            active = sum(1 for e in known.values() if e.holds and e.tenant == tenant)
            waiting = sum(1 for e in known.values() if e.waiting)
        for name, pending in self._pending.items():
            if name in known:
                continue  # the source has seen it, and has seen at least as far
            if (
                listed_at is not None
                and pending.done_at is not None
                and pending.done_at < listed_at
            ):
                continue  # finished before the LIST began, and is not in it: gone
            active += pending.tenant == tenant
            waiting += 1
        return Counts(active=active, waiting=waiting)

    def _forget_settled(self) -> None:
        """Drop the creates that every view now knows of (see _Pending), and those finished
        longer ago than the grace period."""
        now = self._clock()
        oldest_listing = min(self._listings, default=None)
        for name, pending in list(self._pending.items()):
            if pending.done_at is None:
                continue
            known = pending.seen and (oldest_listing is None or pending.done_at < oldest_listing)
            if known or now - pending.done_at > PENDING_GRACE_SECONDS:
                del self._pending[name]

    # --- fed by the informer ------------------------------------------------------------------

    def _replace(self, items: Iterable[dict[str, Any]], started: float) -> None:
        """A LIST started at `started` is the new truth; the index is in sync."""
        entries = {}
        for item in items:
            name, entry = _entry_of(item)
            if entry is not None:
                entries[name] = entry
        self._entries = {}
        self._active, self._waiting = {}, 0
        for name, entry in entries.items():
            self._put(name, entry)
        for name, pending in self._pending.items():
            if name in entries or (pending.done_at is not None and pending.done_at < started):
                pending.seen = True
        self._synced = True

    def _apply(self, kind: str, raw: dict[str, Any]) -> None:
        name, entry = _entry_of(raw)
        pending = self._pending.get(name)
        if pending is not None:
            pending.seen = True
        self._put(name, None if kind == "DELETED" else entry)

    def _put(self, name: str, entry: Entry | None) -> None:
        """Set (or with None, remove) one entry, and keep the counts in step."""
        old = self._entries.pop(name, None)
        if old is not None:
            if old.holds:
                self._active[old.tenant] -= 1
                if not self._active[old.tenant]:
                    del self._active[old.tenant]
            self._waiting -= old.waiting
        if entry is not None:
            self._entries[name] = entry
            if entry.holds:
                self._active[entry.tenant] = self._active.get(entry.tenant, 0) + 1
            self._waiting += entry.waiting


def _entry_of(raw: dict[str, Any]) -> tuple[str, Entry | None]:
    name = str(raw.get("metadata", {}).get("name", ""))
    try:
        return name, Entry.of(AvatarSession.model_validate(raw))
    except ValidationError:
        # Counted by nobody, as in a LIST (kube.py skips what does not validate either).
        return name, None
