"""The admission index without a cluster: what it counts and lists, when it asks the API server
instead, and that concurrent requests never both take the last slot. (Its watch on the real API
server is tested in test_admission_on_control_plane.py.)"""

from __future__ import annotations

import asyncio
import random
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from typing import Any

import pytest

from api_shim.errors import ApiError, ErrorType
from api_shim.sessions import mapping
from api_shim.sessions.index import PENDING_GRACE_SECONDS, Counts, SessionIndex
from api_shim.sessions.schemas import CreateSessionRequest
from avatar_crds.enums import Phase
from avatar_crds.ids import SESSION_PREFIX, new_public_id, to_resource_name
from avatar_crds.phases import phase_of, session_holds_slot, session_is_waiting
from avatar_crds.session import AvatarSession

pytestmark = pytest.mark.anyio

RequestFactory = Callable[..., dict[str, Any]]
LIMIT = 2


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def index(clock: Clock) -> SessionIndex:
    return SessionIndex(None, clock=clock)


def new_name() -> str:
    return to_resource_name(new_public_id(SESSION_PREFIX), SESSION_PREFIX)


@pytest.fixture
def raw_session(make_request: RequestFactory) -> Callable[..., dict[str, Any]]:
    request = CreateSessionRequest.model_validate(make_request())

    def build(
        tenant: str = "acme", phase: str | None = None, deleting: bool = False, name: str = ""
    ) -> dict[str, Any]:
        resource = mapping.build_session(
            request,
            name=name or new_name(),
            namespace="facecast",
            tenant=tenant,
            max_duration_seconds=600,
        )
        body = mapping.session_body(resource)
        if phase is not None:
            ended = phase in ("ended", "failed", "canceled")
            reason = {"ended": "user_ended", "failed": "unschedulable", "canceled": "user_canceled"}
            body["status"] = {"phase": phase, **({"reason": reason[phase]} if ended else {})}
        if deleting:
            body["metadata"]["deletionTimestamp"] = datetime.now(UTC).isoformat()
        return body

    return build


def refuse_at_limit(counts: Counts) -> None:
    if counts.active >= LIMIT:
        raise ApiError(ErrorType.QUOTA_EXCEEDED, "concurrency_limit_reached", "full")


class Lister:
    """A LIST of the API server, counting how often it is asked."""

    def __init__(self, items: list[dict[str, Any]] | None = None) -> None:
        self.items = items or []
        self.calls = 0

    async def __call__(self) -> list[AvatarSession]:
        self.calls += 1
        await asyncio.sleep(0)
        return [AvatarSession.model_validate(item) for item in self.items]


async def test_out_of_sync_it_asks_the_api_server(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    lister = Lister([raw_session(), raw_session(phase="ended")])
    async with index.admit("acme", new_name(), refuse_at_limit, lister):
        pass
    assert lister.calls == 1
    with pytest.raises(ApiError):  # the LIST's one active session plus the one just made
        async with index.admit("acme", new_name(), refuse_at_limit, lister):
            pass
    assert lister.calls == 2


async def test_in_sync_it_counts_by_itself_what_holds_a_slot(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    index._replace(
        [
            raw_session(),
            raw_session(phase="queued"),
            raw_session(phase="running"),
            raw_session(phase="ended"),
            raw_session(phase="failed"),
            raw_session(phase="running", deleting=True),
            raw_session(tenant="globex"),
        ],
        started=0.0,
    )
    assert index.counts("acme") == Counts(active=3, waiting=3)
    assert index.counts("globex") == Counts(active=1, waiting=3)
    lister = Lister()
    async with index.admit("globex", new_name(), refuse_at_limit, lister):
        assert index.counts("globex") == Counts(active=2, waiting=4)
    assert lister.calls == 0


async def test_in_sync_a_refusal_comes_from_the_index_without_a_list(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    index._replace([raw_session(phase="running"), raw_session(phase="running")], started=0.0)
    lister = Lister()
    with pytest.raises(ApiError):
        async with index.admit("acme", new_name(), refuse_at_limit, lister):
            pass
    assert lister.calls == 0


async def test_a_session_this_process_deleted_frees_its_slot_at_once(
    index: SessionIndex, clock: Clock, raw_session: Callable[..., dict[str, Any]]
) -> None:
    """Whatever older events of it still arrive, until the watch reports it gone."""
    running, other = raw_session(phase="running"), raw_session(phase="running")
    index._replace([running, other], started=0.0)
    index.deleted(running["metadata"]["name"])
    assert index.counts("acme") == Counts(active=1, waiting=0)
    index._apply("MODIFIED", running)  # an event from before the delete
    assert index.counts("acme") == Counts(active=1, waiting=0)
    lister = Lister()
    async with index.admit("acme", new_name(), refuse_at_limit, lister):
        pass
    assert lister.calls == 0
    index._apply("DELETED", running)
    assert index.counts("acme") == Counts(active=2, waiting=1)

    made = new_name()  # made and deleted here before the watch reported either
    clock.now += 1
    index._replace([], started=clock.now)
    async with index.admit("acme", made, refuse_at_limit, lister):
        pass
    index.deleted(made)
    assert index.counts("acme") == Counts(active=0, waiting=0)


async def test_lists_show_this_process_creates_before_the_watch_does(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    assert index.sessions("acme") is None  # not in sync: the caller LISTs instead
    theirs = raw_session(phase="running")
    index._replace([theirs, raw_session(tenant="globex")], started=0.0)
    name = new_name()
    async with index.admit("acme", name, refuse_at_limit, Lister()):
        index.created(AvatarSession.model_validate(raw_session(name=name)))

    def names() -> list[str]:
        sessions = index.sessions("acme")
        assert sessions is not None
        return sorted(session.metadata.name or "" for session in sessions)

    assert names() == sorted([theirs["metadata"]["name"], name])
    index._apply("ADDED", raw_session(name=name, phase="queued"))
    sessions = index.sessions("acme")
    assert sessions is not None
    assert {phase_of(s) for s in sessions if s.metadata.name == name} == {Phase.QUEUED}
    index._apply("DELETED", raw_session(name=name))
    assert names() == [theirs["metadata"]["name"]]


async def test_a_create_whose_session_was_deleted_meanwhile_waits_for_no_phase(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    """Deleted while its create still made the rest (its Secret): no event is left to wake the
    wait for the operator's first phase, so it must not begin."""
    index._replace([], started=0.0)
    name = new_name()
    async with index.admit("acme", name, refuse_at_limit, Lister()):
        index.created(AvatarSession.model_validate(raw_session(name=name)))
        index._apply("ADDED", raw_session(name=name))
        index._apply("DELETED", raw_session(name=name))
    assert await asyncio.wait_for(index.past_created(name, within=60.0), timeout=5.0) is None


async def test_concurrent_requests_never_both_take_the_last_slot(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    index._replace([raw_session(phase="running")], started=0.0)
    lister = Lister([raw_session(phase="running")])
    release = asyncio.Event()

    async def create() -> bool:
        try:
            async with index.admit("acme", new_name(), refuse_at_limit, lister):
                await release.wait()  # the create is in flight: nobody has seen it yet
        except ApiError:
            return False
        return True

    tasks = [asyncio.create_task(create()) for _ in range(6)]
    await asyncio.sleep(0.01)
    release.set()
    assert sorted(await asyncio.gather(*tasks)) == [False] * 5 + [True]


async def test_a_list_in_flight_still_counts_what_finished_after_it_began(
    index: SessionIndex, clock: Clock, raw_session: Callable[..., dict[str, Any]]
) -> None:
    """Two creates take both slots; a third request's confirming LIST begins, then both
    creates finish and the watch reports them, then the LIST returns without them."""
    index._replace([], started=0.0)
    created = asyncio.Event()
    names = [new_name(), new_name()]

    async def create(name: str) -> None:
        async with index.admit("acme", name, refuse_at_limit, Lister()):
            await created.wait()

    creates = [asyncio.create_task(create(name)) for name in names]
    await asyncio.sleep(0)
    listing = asyncio.Event()

    async def stale_list() -> list[AvatarSession]:
        await listing.wait()
        return []  # its snapshot predates both creates

    third = asyncio.create_task(_admitted(index, stale_list))
    await asyncio.sleep(0)
    clock.now += 1
    created.set()
    await asyncio.gather(*creates)
    for name in names:
        index._apply("ADDED", raw_session(name=name))
    listing.set()
    assert await third is False
    assert index.counts("acme") == Counts(active=2, waiting=2)


async def _admitted(
    index: SessionIndex, lister: Callable[[], Awaitable[list[AvatarSession]]]
) -> bool:
    try:
        async with index.admit("acme", new_name(), refuse_at_limit, lister):
            return True
    except ApiError:
        return False


async def test_a_finished_create_counts_until_the_watch_or_a_later_list_has_it(
    index: SessionIndex, clock: Clock, raw_session: Callable[..., dict[str, Any]]
) -> None:
    index._replace([raw_session(phase="running")], started=0.0)
    name = new_name()
    async with index.admit("acme", name, refuse_at_limit, Lister()):
        pass
    assert index.counts("acme") == Counts(active=2, waiting=1)
    index._apply("ADDED", raw_session(name=name))  # the watch reports it
    assert index.counts("acme") == Counts(active=2, waiting=1)
    index._apply("DELETED", raw_session(name=name))
    assert index.counts("acme") == Counts(active=1, waiting=0)

    other = new_name()
    async with index.admit("acme", other, refuse_at_limit, Lister()):
        pass
    clock.now += 1
    index._lost()  # the watch failed: creates LIST
    # A LIST started after the create returned knows better: here, the session is gone.
    lister = Lister([])
    async with index.admit("acme", new_name(), refuse_at_limit, lister):
        pass
    assert lister.calls == 1


async def test_a_finished_create_the_watch_never_reports_stops_counting(
    index: SessionIndex, clock: Clock, raw_session: Callable[..., dict[str, Any]]
) -> None:
    index._replace([raw_session(phase="running")], started=0.0)
    async with index.admit("acme", new_name(), refuse_at_limit, Lister()):
        pass
    assert index.counts("acme") == Counts(active=2, waiting=1)
    clock.now += PENDING_GRACE_SECONDS + 1
    assert index.counts("acme") == Counts(active=1, waiting=0)


async def test_a_failed_create_frees_its_place_at_once(index: SessionIndex) -> None:
    index._replace([], started=0.0)
    with pytest.raises(RuntimeError):
        async with index.admit("acme", new_name(), refuse_at_limit, Lister()):
            raise RuntimeError("the API server said no")
    assert index.counts("acme") == Counts(active=0, waiting=0)


async def test_an_abandoned_create_keeps_counting(index: SessionIndex) -> None:
    """The caller was cancelled, but a shielded create may still complete."""
    index._replace([], started=0.0)
    with pytest.raises(asyncio.CancelledError):
        async with index.admit("acme", new_name(), refuse_at_limit, Lister()):
            raise asyncio.CancelledError
    assert index.counts("acme") == Counts(active=1, waiting=1)


async def test_views_combine_by_the_stage_that_moved_on(
    index: SessionIndex, clock: Clock, raw_session: Callable[..., dict[str, Any]]
) -> None:
    """A create that returned after the LIST began counts, unless the LIST has seen it end."""
    index._replace([], started=0.0)
    name = new_name()
    async with index.admit("acme", name, refuse_at_limit, Lister()):
        pass
    clock.now -= 1  # the next LIST started before that create returned
    lister = Lister([raw_session(name=name, phase="canceled"), raw_session(phase="running")])
    index._replace([raw_session(phase="running"), raw_session(phase="running")], started=0.0)
    index._lost()  # the watch failed: creates LIST
    async with index.admit("acme", new_name(), refuse_at_limit, lister):
        pass
    assert lister.calls == 1


async def test_a_relist_drops_what_it_reflects(
    index: SessionIndex, clock: Clock, raw_session: Callable[..., dict[str, Any]]
) -> None:
    index._replace([], started=0.0)
    async with index.admit("acme", new_name(), refuse_at_limit, Lister()):
        pass
    assert index.counts("acme") == Counts(active=1, waiting=1)
    clock.now += 1
    index._replace([], started=clock.now)  # the create's session was deleted in a watch gap
    assert index.counts("acme") == Counts(active=0, waiting=0)


def test_the_running_counts_match_a_recount_after_any_events(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    """The counts are kept event by event; they must always equal counting from scratch."""
    rng = random.Random(7)
    phases = [None, "queued", "starting", "running", "ended", "failed", "canceled"]
    names = [new_name() for _ in range(12)]
    current: dict[str, dict[str, Any]] = {}
    index._replace([], started=0.0)
    for _ in range(400):
        name = rng.choice(names)
        if name in current and rng.random() < 0.2:
            index._apply("DELETED", current.pop(name))
        else:
            raw = raw_session(
                name=name,
                tenant=rng.choice(["acme", "globex"]),
                phase=rng.choice(phases),
                deleting=rng.random() < 0.1,
            )
            index._apply("MODIFIED" if name in current else "ADDED", raw)
            current[name] = raw
        if rng.random() < 0.05:
            index._replace(list(current.values()), started=0.0)
        sessions = [AvatarSession.model_validate(raw) for raw in current.values()]
        for tenant in ("acme", "globex", "initech"):
            assert index.counts(tenant) == Counts(
                active=sum(
                    1 for s in sessions if s.spec.tenant == tenant and session_holds_slot(s)
                ),
                waiting=sum(1 for s in sessions if session_is_waiting(s)),
            )


def test_objects_that_do_not_validate_are_not_counted(
    index: SessionIndex, raw_session: Callable[..., dict[str, Any]]
) -> None:
    broken = raw_session()
    broken["spec"]["quality"] = "ultra"
    index._replace([broken, raw_session()], started=0.0)
    assert index.counts("acme") == Counts(active=1, waiting=1)
    index._apply("MODIFIED", broken)
    assert index.counts("acme") == Counts(active=1, waiting=1)


def test_out_of_sync_it_has_no_counts(index: SessionIndex) -> None:
    assert index.counts("acme") is None
    assert not index.synced
