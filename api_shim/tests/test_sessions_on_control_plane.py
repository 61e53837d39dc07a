"""Reading, listing, ending, keeping alive and cancelling sessions against the real
kube-apiserver, each tenant seeing only its own."""

from __future__ import annotations

import asyncio
import itertools
from dataclasses import replace
from datetime import UTC, datetime

import pytest

from api_shim.tests.control_plane import (
    BASE_SETTINGS,
    WAIT_TIMEOUT,
    Cluster,
    RequestFactory,
    _created,
    _index_sees,
    error_of,
    eventually,
)
from avatar_crds.ids import new_public_id

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


# --- read ----------------------------------------------------------------------------------------


async def test_get_returns_what_the_operator_wrote(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        session = await _created(http, acme, make_request(avatar_id=avatar))
        cluster.set_session_status(
            session["id"],
            {
                "phase": "running",
                "queuedAt": "2026-11-21T08:00:01Z",
                "runningAt": "2026-11-21T08:00:03Z",
                "deadlines": {"maxDurationAt": "2026-11-21T08:10:03Z"},
                "worker": {
                    "firstFrameAt": "2026-11-21T08:00:04Z",
                    "frames": 250,
                    "billableSeconds": 10.0,
                },
            },
        )
        response = await http.get(f"/v1/sessions/{session['id']}", headers=acme.headers)
    assert response.status_code == 200
    got = response.json()
    assert got["status"] == "running"
    assert got["started_at"] == "2026-11-21T08:00:03Z"
    assert got["first_frame_at"] == "2026-11-21T08:00:04Z"
    assert got["expiration"] == "2026-11-21T08:10:03Z"
    assert got["usage"] == {"billable_seconds": 10.0, "frames": 250}


async def test_a_tenant_never_sees_another_tenants_session(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    async with cluster.api() as http:
        session = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        path = f"/v1/sessions/{session['id']}"
        for response in (
            await http.get(path, headers=globex.headers),
            await http.post(f"{path}/end", headers=globex.headers),
            await http.post(f"{path}/keep-alive", headers=globex.headers),
            await http.delete(path, headers=globex.headers),
        ):
            error = error_of(response, 404, "not_found", "session_not_found")
            assert error["param"] == "id"
        listing = await http.get("/v1/sessions", headers=globex.headers)
        assert listing.json()["data"] == []
        untouched = await http.get(path, headers=acme.headers)
    assert untouched.json()["end_requested_at"] is None
    assert cluster.session_object(session["id"]) is not None


@pytest.mark.parametrize("session_id", ["sess_nope", "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3", "x" * 300])
async def test_malformed_or_unknown_ids_are_404(cluster: Cluster, session_id: str) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await http.get(f"/v1/sessions/{session_id}", headers=acme.headers)
        unknown = await http.get(f"/v1/sessions/{new_public_id('sess')}", headers=acme.headers)
    error_of(response, 404, "not_found", "session_not_found")
    error_of(unknown, 404, "not_found", "session_not_found")


async def test_list_pages_newest_first_without_gaps_or_repeats(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    async with cluster.api() as http:
        mine = [
            (await _created(http, acme, make_request(avatar_id=cluster.avatar(acme))))["id"]
            for _ in range(5)
        ]
        await _created(http, globex, make_request(avatar_id=cluster.avatar(globex)))
        seen: list[str] = []
        pages = 0
        cursor: str | None = None
        while True:
            params = {"limit": "2", **({"cursor": cursor} if cursor else {})}
            page = (await http.get("/v1/sessions", params=params, headers=acme.headers)).json()
            assert page["object"] == "list"
            seen += [session["id"] for session in page["data"]]
            pages += 1
            if pages == 1:  # a session made mid-walk sorts first and shifts nothing
                await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
            if not page["has_more"]:
                assert page["next_cursor"] is None
                break
            cursor = page["next_cursor"]
            assert cursor == page["data"][-1]["id"]  # the page continues after its last id
    assert pages == 3
    assert seen == sorted(mine, reverse=True)
    async with cluster.api() as http:
        # Any well-formed id is a position, whether or not that session exists.
        after_second = sorted(mine, reverse=True)[1]
        gone = after_second[:-1] + ("0" if after_second[-1] != "0" else "1")
        page = (
            await http.get("/v1/sessions", params={"cursor": gone}, headers=acme.headers)
        ).json()
        assert [s["id"] for s in page["data"]] == [
            i for i in sorted(mine, reverse=True) if i < gone
        ]


async def test_list_filters_by_status(cluster: Cluster, make_request: RequestFactory) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        first = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        second = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        cluster.set_session_status(second["id"], {"phase": "queued"})
        # Lists read the watched index, a watch's delay behind the status write.
        await _index_sees(cluster, acme, second["id"], "queued")

        async def ids(status: str) -> list[str]:
            response = await http.get(
                "/v1/sessions", params={"status": status}, headers=acme.headers
            )
            assert response.status_code == 200, response.text
            return [session["id"] for session in response.json()["data"]]

        assert await ids("created") == [first["id"]]
        assert await ids("queued") == [second["id"]]
        assert await ids("running") == []


# --- end, keep-alive, cancel ---------------------------------------------------------------------


async def test_end_sets_the_request_once_and_repeating_it_changes_nothing(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        path = f"/v1/sessions/{session['id']}/end"
        first = await http.post(path, headers=acme.headers)
        second = await http.post(path, headers=acme.headers)
    assert first.status_code == second.status_code == 200
    asked = first.json()["end_requested_at"]
    assert asked is not None
    assert second.json()["end_requested_at"] == asked
    resource = cluster.session_object(session["id"])
    assert resource is not None
    assert datetime.fromisoformat(resource["spec"]["endRequestedAt"]) == datetime.fromisoformat(
        asked
    )


async def test_concurrent_ends_all_succeed_with_the_first_request_time(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    ticks = itertools.count()

    def distinct_seconds() -> datetime:
        """Every end request carries another time, so only the first can be stored."""
        return datetime(2026, 11, 21, 9, 0, next(ticks), tzinfo=UTC)

    # A warm key cache, so that the requests do not queue behind its reloads but really race.
    settings = replace(BASE_SETTINGS, auth_cache_ttl_seconds=600.0)
    async with cluster.api(settings, now=distinct_seconds) as http:
        session = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        path = f"/v1/sessions/{session['id']}/end"
        responses = await asyncio.gather(*(http.post(path, headers=acme.headers) for _ in range(6)))
    assert {response.status_code for response in responses} == {200}
    assert len({response.json()["end_requested_at"] for response in responses}) == 1


async def test_end_on_a_finished_session_returns_it_unchanged(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        cluster.set_session_status(
            session["id"],
            {"phase": "ended", "reason": "idle_timeout", "finishedAt": "2026-11-21T08:05:00Z"},
        )
        response = await http.post(f"/v1/sessions/{session['id']}/end", headers=acme.headers)
    assert response.status_code == 200
    ended = response.json()
    assert (ended["status"], ended["end_reason"], ended["end_requested_at"]) == (
        "ended",
        "idle_timeout",
        None,
    )
    assert ended["ended_at"] == "2026-11-21T08:05:00Z"


async def test_keep_alive_restarts_the_idle_timer_until_the_session_ends(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        path = f"/v1/sessions/{session['id']}"
        alive = await http.post(f"{path}/keep-alive", headers=acme.headers)
        assert alive.status_code == 200
        assert alive.json()["keep_alive_at"] is not None
        resource = cluster.session_object(session["id"])
        assert resource is not None
        assert resource["spec"]["keepAliveAt"]
        await http.post(f"{path}/end", headers=acme.headers)
        too_late = await http.post(f"{path}/keep-alive", headers=acme.headers)
    error_of(too_late, 409, "conflict", "session_not_active")


async def test_cancel_deletes_the_session_and_the_collector_removes_its_secret(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        session = await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        path = f"/v1/sessions/{session['id']}"
        assert cluster.token_secret(session["id"]) is not None
        canceled = await http.delete(path, headers=acme.headers)
        assert canceled.status_code == 200
        assert canceled.json()["id"] == session["id"]
        assert canceled.json()["status"] == "created"  # as last seen; the operator records it
        # No operator (and so no finalizer) here: the resource goes at once.
        error_of(await http.get(path, headers=acme.headers), 404, "not_found", "session_not_found")
        error_of(
            await http.delete(path, headers=acme.headers), 404, "not_found", "session_not_found"
        )
    await eventually(
        lambda: cluster.token_secret(session["id"]) is None,
        within=WAIT_TIMEOUT,
        what="the garbage collector to delete the token Secret",
    )
