"""Admission for POST /v1/sessions, and the reads of GET /v1/sessions and /v1/usage, without
listing every session on every request.

The tenant's concurrency limit and the namespace's queue length are checked against an
in-memory index of the namespace's AvatarSessions, kept by a LIST then WATCH on the event loop
(an informer), plus the sessions this process is creating right now ("pending"), which
the watch may not have reported yet. Checking and reserving happen in one step without
awaiting, so two concurrent requests in this process can never both take the last slot.
The same index holds each session as last seen, so a tenant's list and usage are read from
memory too.

Once in sync, the index alone decides, refusals included: it is at most a watch's delay behind
the cluster, and this process's own creates and deletes are in it at once (a later list shows
them; a cancel frees its slot for the next create). In the moment after a slot freed elsewhere
(the operator ended a session) a create may still be refused; the 429 carries Retry-After.
While the watch is not in sync (starting, after an error, without RBAC `watch`), every request
falls back to a LIST rather than waiting for the index: the LIST is as true and costs no more
than the index's own first one. Across replicas the operator's admission control is what
finally holds the line.

Views taken at different times combine soundly because a session's stages only move
forward: once it stops holding a concurrency slot (terminal or being deleted) or stops
waiting (past `queued`), it never does again; a session counts only if no view says it has
moved on.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from api_shim.informer import WatchedIndex, WatchSource
from avatar_crds import contract, phases
from avatar_crds.enums import Phase
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.session import AvatarSession

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
            holds=phases.session_holds_slot(session),
            waiting=phases.session_is_waiting(session),
        )


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
    gone: bool = False  # ... and it was its deletion
    session: AvatarSession | None = None  # as created, for lists until the watch has it


Check = Callable[[Counts], None]  # raises ApiError to refuse


class SessionIndex(WatchedIndex):
    def __init__(
        self, source: WatchSource | None, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Everything runs on the event loop, so a check and its reservation, with no await
        between them, are one atomic step."""
        self._clock = clock
        self._entries: dict[str, Entry] = {}
        self._sessions: dict[str, dict[str, AvatarSession]] = {}  # by tenant, then name
        self._active: dict[str, int] = {}  # by tenant: entries holding a slot
        self._waiting = 0  # entries waiting for a worker
        self._pending: dict[str, _Pending] = {}
        # Sessions this process deleted, by when: they have moved on, whatever older events
        # still arriving say, until the watch reports them gone (or the grace period ends).
        self._leaving: dict[str, float] = {}
        self._listings: list[float] = []  # start times of the admission LISTs in flight
        # Creates waiting for the operator's first phase write, by session name (past_created).
        self._phase_waits: dict[str, asyncio.Event] = {}
        super().__init__(
            source, AVATAR_SESSION.plural, label_selector=contract.MANAGED_SELECTOR, clock=clock
        )

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
        if self._synced:
            check(self._counts(tenant, None, None))  # refuses from the index alone
            self._pending[name] = _Pending(tenant)
        else:
            # Not in sync: ask the API server, as without an index.
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

    def created(self, session: AvatarSession) -> None:
        """The session an admitted create made, as the API server returned it: lists show it
        before the watch reports it."""
        pending = self._pending.get(session.metadata.name or "")
        if pending is not None:
            pending.session = session

    def deleted(self, name: str) -> None:
        """This process deleted session `name`: it holds no slot and waits no more from now."""
        self._leaving[name] = self._clock()
        entry = self._entries.get(name)
        if entry is not None:
            self._put(name, self._sessions[entry.tenant][name])

    async def past_created(self, name: str, within: float) -> AvatarSession | None:
        """Session `name` as last seen once it has left `created` (the operator's first phase
        write: `queued`, or further), waiting up to `within` seconds for the watch (or a relist)
        to report it; None if it has not by then, or was deleted. The watch's event wakes the
        wait, so it ends as soon as the phase is seen and never later than `within`."""
        seen = self._past_created_now(name)
        pending = self._pending.get(name)  # still held: its create returned with no await since
        if seen is not None or within <= 0 or (pending is not None and pending.gone):
            return seen  # a session deleted before the wait began would never wake it
        wake = self._phase_waits.setdefault(name, asyncio.Event())
        try:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(within):
                    await wake.wait()
        finally:
            self._phase_waits.pop(name, None)
        return self._past_created_now(name)

    def _past_created_now(self, name: str) -> AvatarSession | None:
        entry = self._entries.get(name)
        if entry is None:
            return None
        session = self._sessions[entry.tenant][name]
        return None if phases.phase_of(session) is Phase.CREATED else session

    def counts(self, tenant: str) -> Counts | None:
        """What the index says now; None while it is not in sync."""
        self.start()
        return self._counts(tenant, None, None) if self._synced else None

    async def counts_now(
        self, tenant: str, list_sessions: Callable[[], Awaitable[list[AvatarSession]]]
    ) -> Counts:
        """What `admit` would check now, reserving nothing: from the index, or from a LIST
        while the index is not in sync."""
        counts = self.counts(tenant)
        if counts is not None:
            return counts
        listed_at = self._clock()
        return self._counts(tenant, await list_sessions(), listed_at)

    def sessions(self, tenant: str) -> list[AvatarSession] | None:
        """The tenant's sessions as last seen, in no order; None while not in sync."""
        self.start()
        if not self._synced:
            return None
        self._forget_settled()
        known = self._sessions.get(tenant, {})
        made = [
            pending.session
            for name, pending in self._pending.items()
            if pending.session is not None
            and pending.tenant == tenant
            and not pending.seen  # else the watch has told the index all about it
            and name not in known
        ]
        return [*known.values(), *made]

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
            known = {
                session.metadata.name or "": self._moved_on(session.metadata.name or "", session)
                for session in listed
            }
            active = sum(1 for e in known.values() if e.holds and e.tenant == tenant)
            waiting = sum(1 for e in known.values() if e.waiting)
        for name, pending in self._pending.items():
            if name in known or name in self._leaving:
                continue  # the source has seen it, and has seen at least as far; or deleted
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
        for name, since in list(self._leaving.items()):
            if now - since > PENDING_GRACE_SECONDS:
                del self._leaving[name]

    def _moved_on(self, name: str, session: AvatarSession) -> Entry:
        """The session's entry, knowing what this process did to it."""
        entry = Entry.of(session)
        if name in self._leaving:
            return Entry(entry.tenant, holds=False, waiting=False)
        return entry

    # --- fed by the informer ------------------------------------------------------------------

    def _replace(self, items: Iterable[dict[str, Any]], started: float) -> None:
        """A LIST started at `started` is the new truth; the index is in sync."""
        listed = {}
        for item in items:
            name, session = _session_of(item)
            if session is not None:
                listed[name] = session
        self._entries, self._sessions = {}, {}
        self._active, self._waiting = {}, 0
        for name, session in listed.items():
            self._put(name, session)
        for name, pending in self._pending.items():
            if name in listed or (pending.done_at is not None and pending.done_at < started):
                pending.seen = True
                pending.gone = name not in listed
        for name in [name for name in self._leaving if name not in listed]:
            del self._leaving[name]
        self._synced = True

    def _apply(self, kind: str, raw: dict[str, Any]) -> None:
        name, session = _session_of(raw)
        pending = self._pending.get(name)
        if pending is not None:
            pending.seen = True
            pending.gone = kind == "DELETED"
        if kind == "DELETED":
            self._leaving.pop(name, None)
        self._put(name, None if kind == "DELETED" else session)

    def _put(self, name: str, session: AvatarSession | None) -> None:
        """Set (or with None, remove) one session, and keep the counts in step."""
        old = self._entries.pop(name, None)
        if old is not None:
            if old.holds:
                self._active[old.tenant] -= 1
                if not self._active[old.tenant]:
                    del self._active[old.tenant]
            self._waiting -= old.waiting
            del self._sessions[old.tenant][name]
            if not self._sessions[old.tenant]:
                del self._sessions[old.tenant]
        if session is not None:
            entry = self._moved_on(name, session)
            self._entries[name] = entry
            self._sessions.setdefault(entry.tenant, {})[name] = session
            if entry.holds:
                self._active[entry.tenant] = self._active.get(entry.tenant, 0) + 1
            self._waiting += entry.waiting
        wake = self._phase_waits.get(name)
        if wake is not None and (session is None or phases.phase_of(session) is not Phase.CREATED):
            wake.set()


def _session_of(raw: dict[str, Any]) -> tuple[str, AvatarSession | None]:
    name = str(raw.get("metadata", {}).get("name", ""))
    try:
        return name, AvatarSession.model_validate(raw)
    except ValidationError:
        # Counted and listed by nobody, as in a LIST (kube.py skips what does not validate).
        return name, None
