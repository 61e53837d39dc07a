"""The public API against the real kube-apiserver (plus controller-manager for garbage
collection). No operator runs here, so sessions stay `created` unless a test writes their
status the way the operator would, through the status subresource.

One namespace for the module; each test makes its own tenants, so counts never mix.
"""

from __future__ import annotations

import asyncio
import base64
import itertools
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException

from api_shim import admin, idempotency
from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.sessions.service import utc_now
from api_shim.settings import Settings
from avatar_crds import contract
from avatar_crds.ids import new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION
from testbed.objects import avatar_manifest
from testbed.tenants import TenantKey, new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

RequestFactory = Callable[..., dict[str, Any]]
T = TypeVar("T")

WAIT_TIMEOUT = 60.0  # generous: the garbage collector on a busy 2-core machine
BASE_SETTINGS = Settings(auth_cache_ttl_seconds=0.0, auth_miss_reload_seconds=0.0)


async def eventually(check: Callable[[], T | None], *, within: float, what: str) -> T:
    """Poll `check` until it returns something truthy, or fail after `within` seconds."""
    deadline = time.monotonic() + within
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {within}s waiting for {what}")
        await asyncio.sleep(0.1)


def error_of(response: httpx.Response, status: int, type_: str, code: str) -> dict[str, Any]:
    """Assert the envelope (exactly its five fields, request id = header) and return it."""
    assert response.status_code == status, response.text
    body = response.json()
    assert set(body) == {"error"}
    error: dict[str, Any] = body["error"]
    assert set(error) == {"type", "code", "message", "param", "request_id"}
    assert (error["type"], error["code"]) == (type_, code), error
    assert error["request_id"] == response.headers["x-request-id"]
    return error


# --- the harness ---------------------------------------------------------------------------------


@dataclass
class Cluster:
    kube: Kube
    admin_client: client.ApiClient
    namespace: str

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin_client)

    @property
    def core(self) -> Any:  # Any: called with plain manifests, not V1 model objects
        return client.CoreV1Api(self.admin_client)

    @property
    def rbac(self) -> Any:
        return client.RbacAuthorizationV1Api(self.admin_client)

    async def tenant(
        self,
        *,
        max_concurrent: int = 10,
        minutes: int = 60,
        max_duration: int = 600,
        qualities: tuple[str, ...] = ("mock", "lite"),
        rpm: int = 600,
    ) -> TenantKey:
        return await new_tenant(
            self.kube,
            max_concurrent=max_concurrent,
            minutes=minutes,
            max_duration=max_duration,
            qualities=qualities,
            requests_per_minute=rpm,
        )

    def avatar(self, owner: TenantKey, visibility: str = "tenant") -> str:
        public_id = new_public_id("av")
        body = avatar_manifest(public_id, owner.name, visibility=visibility)
        self.custom.create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, body
        )
        return public_id

    def session_object(self, session_id: str) -> dict[str, Any] | None:
        try:
            raw = self.custom.get_namespaced_custom_object(
                GROUP,
                VERSION,
                self.namespace,
                AVATAR_SESSION.plural,
                to_resource_name(session_id, "sess"),
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        assert isinstance(raw, dict)
        return raw

    def sessions_of(self, tenant: TenantKey) -> list[dict[str, Any]]:
        raw = self.custom.list_namespaced_custom_object(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            label_selector=f"{contract.LABEL_TENANT}={tenant.name}",
        )
        assert isinstance(raw, dict)
        items: list[dict[str, Any]] = raw["items"]
        return items

    def token_secret(self, session_id: str) -> Any:
        name = contract.token_secret_name(to_resource_name(session_id, "sess"))
        try:
            return self.core.read_namespaced_secret(name, self.namespace)
        except ApiException as error:
            if error.status == 404:
                return None
            raise

    def set_session_status(self, session_id: str, status: dict[str, Any]) -> None:
        """What the operator does: write status through the status subresource."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            to_resource_name(session_id, "sess"),
            {"status": status},
        )

    def set_seconds_used(self, tenant: TenantKey, seconds: float) -> None:
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            TENANT.plural,
            tenant.name,
            {"status": {"usage": {"secondsUsed": seconds}}},
        )

    @asynccontextmanager
    async def api(
        self,
        settings: Settings = BASE_SETTINGS,
        kube: Kube | None = None,
        now: Callable[[], datetime] = utc_now,
    ) -> AsyncIterator[httpx.AsyncClient]:
        """A fresh app instance (fresh caches and buckets) on this namespace."""
        app = create_app(replace(settings, namespace=self.namespace), kube or self.kube, now=now)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


@pytest.fixture(scope="module")
def cluster_namespace(api_client: client.ApiClient, crds: None) -> Iterator[str]:
    core: Any = client.CoreV1Api(api_client)
    name = f"api-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)  # the namespace controller finishes in the background


@pytest.fixture(scope="module")
def cluster(
    control_plane: Any, api_client: client.ApiClient, cluster_namespace: str
) -> Iterator[Cluster]:
    kube = Kube(api_client.configuration, cluster_namespace, timeout=10.0)
    yield Cluster(kube=kube, admin_client=api_client, namespace=cluster_namespace)
    kube.close()


async def _create(
    http: httpx.AsyncClient,
    tenant: TenantKey,
    body: dict[str, Any],
    key: str | None = None,
) -> httpx.Response:
    headers = dict(tenant.headers)
    if key is not None:
        headers[idempotency.HEADER] = key
    return await http.post("/v1/sessions", json=body, headers=headers)


async def _created(
    http: httpx.AsyncClient, tenant: TenantKey, body: dict[str, Any]
) -> dict[str, Any]:
    response = await _create(http, tenant, body)
    assert response.status_code == 201, response.text
    session: dict[str, Any] = response.json()
    return session


async def _index_sees(cluster: Cluster, tenant: TenantKey, session_id: str, phase: str) -> None:
    """Wait until the session index of `cluster.kube` has seen the session in `phase`."""
    name = to_resource_name(session_id, "sess")

    def seen() -> bool:
        sessions = cluster.kube.session_index.sessions(tenant.name) or []
        return any(s.metadata.name == name and s.status.phase == phase for s in sessions)

    await eventually(seen, within=WAIT_TIMEOUT, what=f"the index to see {session_id} {phase}")


# --- create, and where the token goes ------------------------------------------------------------


async def test_create_makes_the_session_and_its_owned_token_secret(
    cluster: Cluster, make_request: RequestFactory, worker_token: str
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        response = await _create(
            http, acme, make_request(avatar_id=avatar, metadata={"ticket": "T-1"})
        )
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["id"].startswith("sess_")
    assert session["object"] == "session"
    assert session["status"] == "created"  # no operator here to queue it
    assert session["avatar_id"] == avatar
    assert (session["quality"], session["aspect_ratio"]) == ("lite", "4:3")
    assert (session["idle_timeout_seconds"], session["max_duration_seconds"]) == (30, 600)
    assert session["metadata"] == {"ticket": "T-1"}
    assert session["transport"]["worker_token"] == "[redacted]"
    assert session["created_at"]
    assert session["usage"] == {"billable_seconds": 0.0, "frames": 0}

    resource = cluster.session_object(session["id"])
    assert resource is not None
    assert resource["spec"]["tenant"] == acme.name
    assert resource["metadata"]["labels"][contract.LABEL_TENANT] == acme.name
    assert resource["metadata"]["labels"][contract.LABEL_MANAGED_BY] == contract.MANAGED_BY
    secret = cluster.token_secret(session["id"])
    assert secret is not None
    assert base64.b64decode(secret.data[contract.TOKEN_SECRET_KEY]).decode() == worker_token
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == (
        "AvatarSession",
        resource["metadata"]["name"],
        resource["metadata"]["uid"],
    )
    assert resource["spec"]["tokenSecretRef"]["name"] == secret.metadata.name


async def test_the_worker_token_is_in_no_response_resource_event_or_log_line(
    cluster: Cluster, make_request: RequestFactory, worker_token: str, captured_logs: Any
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    texts: list[str] = []
    async with cluster.api() as http:
        created = await _create(http, acme, make_request(avatar_id=avatar), key="leak-check")
        session_id = created.json()["id"]
        path = f"/v1/sessions/{session_id}"
        for response in (
            created,
            await _create(http, acme, make_request(avatar_id=avatar), key="leak-check"),
            await http.get(path, headers=acme.headers),
            await http.get("/v1/sessions", headers=acme.headers),
            await http.post(f"{path}/keep-alive", headers=acme.headers),
            await http.post(f"{path}/end", headers=acme.headers),
            await http.delete(path, headers=acme.headers),
            await _create(http, acme, make_request(avatar_id=avatar, quality="pro")),
        ):
            texts.append(response.text + json.dumps(dict(response.headers)))
    resources = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, AVATAR_SESSION.plural
    )
    events = cluster.core.list_namespaced_event(cluster.namespace)
    logs = captured_logs.getvalue()
    assert session_id in logs  # the log lines are really there
    for where, text in [
        ("responses", "\n".join(texts)),
        ("custom resources", json.dumps(resources)),
        ("events", str(events.to_dict())),
        ("logs", logs),
    ]:
        assert worker_token not in text, f"the worker token leaked into {where}"
        assert acme.key not in text, f"the API key leaked into {where}"


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


@pytest.mark.parametrize(
    ("params", "param"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"status": "sleeping"}, "status"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"cursor": "sess_not-a-ulid"}, "cursor"),
        ({"cursor": "av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"}, "cursor"),
        ({"cursor": base64.urlsafe_b64encode(b"v1:../../secrets").decode()}, "cursor"),
    ],
)
async def test_bad_list_parameters_are_400_naming_them(
    cluster: Cluster, params: dict[str, str], param: str
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await http.get("/v1/sessions", params=params, headers=acme.headers)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


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


# --- plan rules ----------------------------------------------------------------------------------


async def test_a_quality_outside_the_plan_is_403(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(qualities=("mock",))
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)))
    error = error_of(response, 403, "permission", "quality_not_allowed")
    assert error["param"] == "quality"
    assert cluster.sessions_of(acme) == []


async def test_max_duration_is_capped_by_the_plan(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_duration=300)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        too_long = await _create(
            http, acme, make_request(avatar_id=avatar, max_duration_seconds=600)
        )
        defaulted = await _created(http, acme, make_request(avatar_id=avatar))
    error = error_of(too_long, 422, "unprocessable", "max_duration_exceeds_plan")
    assert error["param"] == "max_duration_seconds"
    assert defaulted["max_duration_seconds"] == 300
    resource = cluster.session_object(defaulted["id"])
    assert resource is not None
    assert resource["spec"]["maxDurationSeconds"] == 300


async def test_exhausted_minutes_are_403_quota_exceeded(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(minutes=10)
    cluster.set_seconds_used(acme, 600.0)
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)))
    error_of(response, 403, "quota_exceeded", "minutes_exhausted")


async def test_the_concurrency_limit_is_429_with_retry_after_until_a_slot_frees(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=1)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        first = await _created(http, acme, make_request(avatar_id=avatar))
        refused = await _create(http, acme, make_request(avatar_id=avatar))
        error_of(refused, 429, "quota_exceeded", "concurrency_limit_reached")
        assert int(refused.headers["retry-after"]) >= 1
        cluster.set_session_status(
            first["id"], {"phase": "failed", "reason": "unschedulable", "message": "no GPU"}
        )
        # Admission reads the watched index, a watch's delay behind the status write.
        await _index_sees(cluster, acme, first["id"], "failed")
        again = await _create(http, acme, make_request(avatar_id=avatar))
    assert again.status_code == 201


async def test_concurrent_creates_never_exceed_the_limit(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=2)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        responses = await asyncio.gather(
            *(_create(http, acme, make_request(avatar_id=avatar)) for _ in range(6))
        )
    assert sorted(response.status_code for response in responses) == [201, 201, 429, 429, 429, 429]
    assert len(cluster.sessions_of(acme)) == 2


async def test_the_admission_index_follows_the_cluster_and_admits_without_listing(
    cluster: Cluster, make_request: RequestFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once its watch is in sync, creates are admitted or refused from memory, and the index
    follows creates, status changes and deletes."""
    acme = await cluster.tenant(max_concurrent=3)
    avatar = cluster.avatar(acme)
    index = cluster.kube.session_index
    index.start()
    await eventually(lambda: index.synced, within=WAIT_TIMEOUT, what="the index to sync")
    lists = 0
    list_sessions = cluster.kube.list_sessions

    async def counted(selector: str) -> list[Any]:
        nonlocal lists
        lists += 1
        return await list_sessions(selector)

    monkeypatch.setattr(cluster.kube, "list_sessions", counted)
    async with cluster.api() as http:
        responses = await asyncio.gather(
            *(_create(http, acme, make_request(avatar_id=avatar)) for _ in range(8))
        )
        assert sorted(r.status_code for r in responses) == [201] * 3 + [429] * 5
        assert lists == 0
        first, second, _ = [r.json()["id"] for r in responses if r.status_code == 201]

        def active() -> int:
            counts = index.counts(acme.name)
            return -1 if counts is None else counts.active

        await eventually(lambda: active() == 3, within=WAIT_TIMEOUT, what="3 active")
        cluster.set_session_status(
            first, {"phase": "failed", "reason": "unschedulable", "message": "no GPU"}
        )
        await eventually(lambda: active() == 2, within=WAIT_TIMEOUT, what="2 active")
        assert (await http.delete(f"/v1/sessions/{second}", headers=acme.headers)).is_success
        await eventually(lambda: active() == 1, within=WAIT_TIMEOUT, what="1 active")
        lists = 0
        again = await _create(http, acme, make_request(avatar_id=avatar))
    assert again.status_code == 201, again.text
    assert lists == 0
    assert len([s for s in cluster.sessions_of(acme) if "deletionTimestamp" not in s["metadata"]])


async def test_sessions_find_their_avatar_in_the_watched_cache_and_a_deleted_one_is_404(
    cluster: Cluster, make_request: RequestFactory, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Once the avatar index has seen an avatar, creating a session reads nothing from the API
    server for it; when the avatar is deleted (by anyone) the index drops it, and the session
    is refused after a read that confirms it is gone."""
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    name = to_resource_name(avatar, "av")
    index = cluster.kube.avatar_index
    await eventually(lambda: index.get(name), within=WAIT_TIMEOUT, what="the index to see it")
    reads = 0
    get_avatar = cluster.kube.get_avatar

    async def counted(avatar_name: str) -> Any:
        nonlocal reads
        reads += 1
        return await get_avatar(avatar_name)

    monkeypatch.setattr(cluster.kube, "get_avatar", counted)
    async with cluster.api() as http:
        await _created(http, acme, make_request(avatar_id=avatar))
        assert reads == 0
        cluster.custom.delete_namespaced_custom_object(
            GROUP, VERSION, cluster.namespace, AVATAR.plural, name
        )
        await eventually(
            lambda: index.get(name) is None or None, within=WAIT_TIMEOUT, what="it to go"
        )
        response = await _create(http, acme, make_request(avatar_id=avatar))
    error_of(response, 404, "not_found", "avatar_not_found")
    assert reads == 1


async def test_unknown_or_foreign_avatars_are_404_but_public_ones_are_usable(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    private, public = cluster.avatar(globex), cluster.avatar(globex, visibility="public")
    async with cluster.api() as http:
        for avatar in (private, new_public_id("av")):
            response = await _create(http, acme, make_request(avatar_id=avatar))
            assert error_of(response, 404, "not_found", "avatar_not_found")["param"] == "avatar_id"
        usable = await _create(http, acme, make_request(avatar_id=public))
    assert usable.status_code == 201


async def test_usage_reports_concurrency_and_minutes(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=3, minutes=60)
    cluster.set_seconds_used(acme, 600.0)
    async with cluster.api() as http:
        for _ in range(2):
            await _created(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        response = await http.get("/v1/usage", headers={"Authorization": f"Bearer {acme.key}"})
    assert response.status_code == 200
    usage = response.json()
    assert usage["object"] == "usage"
    assert usage["concurrency"] == {"current": 2, "max": 3, "available": 1}
    assert usage["minutes"] == {"included": 60, "used": 10.0, "total_remaining": 50.0}


# --- capacity and rate limits --------------------------------------------------------------------


async def test_a_full_queue_is_503_at_capacity_with_retry_after(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    """Capacity counts waiting sessions namespace-wide, so this test gets its own namespace."""
    namespace = f"cap-{uuid.uuid4().hex[:10]}"
    cluster.core.create_namespace({"metadata": {"name": namespace}})
    try:
        kube = Kube(cluster.admin_client.configuration, namespace, timeout=10.0)
        isolated = Cluster(kube=kube, admin_client=cluster.admin_client, namespace=namespace)
        acme, globex = await isolated.tenant(), await isolated.tenant()
        settings = replace(BASE_SETTINGS, max_queued=2, at_capacity_retry_after_seconds=7)
        async with isolated.api(settings) as http:
            await _created(http, acme, make_request(avatar_id=isolated.avatar(acme)))
            await _created(http, globex, make_request(avatar_id=isolated.avatar(globex)))
            response = await _create(http, acme, make_request(avatar_id=isolated.avatar(acme)))
        error_of(response, 503, "service_unavailable", "at_capacity")
        assert response.headers["retry-after"] == "7"
    finally:
        await kube.aclose()
        cluster.core.delete_namespace(namespace)


async def test_the_rate_limit_is_429_rate_limited_with_retry_after(cluster: Cluster) -> None:
    acme = await cluster.tenant(rpm=2)
    globex = await cluster.tenant(rpm=2)
    async with cluster.api() as http:
        assert (await http.get("/v1/usage", headers=acme.headers)).status_code == 200
        assert (await http.get("/v1/sessions", headers=acme.headers)).status_code == 200
        limited = await http.get("/v1/usage", headers=acme.headers)
        other = await http.get("/v1/usage", headers=globex.headers)
    error_of(limited, 429, "rate_limit", "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1
    assert other.status_code == 200


# --- idempotency ---------------------------------------------------------------------------------


async def test_a_replay_returns_the_original_session_even_after_a_restart(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme))
    async with cluster.api() as http:
        first = await _create(http, acme, body, key="order-1")
        replay = await _create(http, acme, body, key="order-1")
    async with cluster.api() as restarted:
        after_restart = await _create(restarted, acme, body, key="order-1")
    assert first.status_code == replay.status_code == after_restart.status_code == 201
    assert first.json()["id"] == replay.json()["id"] == after_restart.json()["id"]
    assert "idempotent-replayed" not in first.headers
    assert replay.headers["idempotent-replayed"] == "true"
    assert len(cluster.sessions_of(acme)) == 1


async def test_a_reused_key_with_another_body_is_409(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        await _create(http, acme, make_request(avatar_id=avatar), key="order-2")
        response = await _create(
            http, acme, make_request(avatar_id=avatar, quality="mock"), key="order-2"
        )
    error = error_of(response, 409, "conflict", "idempotency_key_reused")
    assert error["param"] == "Idempotency-Key"
    assert len(cluster.sessions_of(acme)) == 1


async def test_concurrent_retries_with_one_key_make_one_session(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant()
    body = make_request(avatar_id=cluster.avatar(acme))
    async with cluster.api() as http:
        responses = await asyncio.gather(
            *(_create(http, acme, body, key="order-3") for _ in range(5))
        )
    assert {response.status_code for response in responses} == {201}
    assert len({response.json()["id"] for response in responses}) == 1
    assert len(cluster.sessions_of(acme)) == 1


async def test_keys_are_scoped_to_the_tenant(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    async with cluster.api() as http:
        mine = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)), key="same")
        theirs = await _create(
            http, globex, make_request(avatar_id=cluster.avatar(globex)), key="same"
        )
    assert mine.status_code == theirs.status_code == 201
    assert mine.json()["id"] != theirs.json()["id"]


async def test_a_refused_request_is_not_remembered(
    cluster: Cluster, make_request: RequestFactory
) -> None:
    acme = await cluster.tenant(max_concurrent=1)
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        first = await _created(http, acme, make_request(avatar_id=avatar))
        refused = await _create(http, acme, make_request(avatar_id=avatar), key="retry-me")
        assert refused.status_code == 429
        await http.delete(f"/v1/sessions/{first['id']}", headers=acme.headers)
        retried = await _create(http, acme, make_request(avatar_id=avatar), key="retry-me")
    assert retried.status_code == 201


# --- request validation over HTTP ----------------------------------------------------------------


@pytest.mark.parametrize(
    "metadata", [[1, 2], "text", 42, None, {"_avatar.x": 1}, {"blob": "x" * 9000}]
)
async def test_bad_metadata_is_400_naming_metadata(
    cluster: Cluster, make_request: RequestFactory, metadata: object
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(metadata=metadata))
    assert error_of(response, 400, "invalid_request", "invalid_parameter")["param"] == "metadata"


@pytest.mark.parametrize(
    ("overrides", "param"),
    [
        ({"aspect_ratio": "16:9"}, "aspect_ratio"),
        ({"quality": "ultra"}, "quality"),
        ({"idle_timeout_seconds": 0}, "idle_timeout_seconds"),
        ({"idle_timeout_seconds": 601}, "idle_timeout_seconds"),
        ({"max_duration_seconds": 3601}, "max_duration_seconds"),
        ({"transport": {"type": "zoom", "url": "wss://x.example.com"}}, "transport"),
        (
            {
                "transport": {
                    "type": "livekit",
                    "url": "http://x",
                    "room_name": "r",
                    "worker_token": "t",
                }
            },
            "transport.url",
        ),
    ],
)
async def test_bad_fields_are_400_naming_the_field(
    cluster: Cluster, make_request: RequestFactory, overrides: dict[str, Any], param: str
) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        response = await _create(http, acme, make_request(**overrides))
    assert response.status_code == 400, response.text
    assert response.json()["error"]["param"] == param


async def test_a_body_that_is_not_json_is_400(cluster: Cluster) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        broken = await http.post(
            "/v1/sessions",
            content=b'{"quality": ',
            headers={**acme.headers, "content-type": "application/json"},
        )
        empty = await http.post("/v1/sessions", headers=acme.headers)
        bad_key = await http.post(
            "/v1/sessions", json={}, headers={**acme.headers, idempotency.HEADER: "x" * 300}
        )
    error_of(broken, 400, "invalid_request", "invalid_json")
    error_of(empty, 400, "invalid_request", "parameter_missing")
    assert bad_key.status_code == 400


# --- keys ----------------------------------------------------------------------------------------


async def test_unknown_keys_are_401_and_revoked_keys_stop_working(cluster: Cluster) -> None:
    acme = await cluster.tenant()
    async with cluster.api() as http:
        stranger = await http.get("/v1/usage", headers={"x-api-key": "fc_" + "A" * 43})
        error_of(stranger, 401, "authentication", "invalid_api_key")
        assert (await http.get("/v1/usage", headers=acme.headers)).status_code == 200
        key_id = (await admin.list_keys(cluster.kube, acme.name))[0].id
        await admin.revoke_key(cluster.kube, acme.name, key_id)
        revoked = await http.get("/v1/usage", headers=acme.headers)
    error_of(revoked, 401, "authentication", "invalid_api_key")


async def test_the_admin_cli_mints_a_key_shown_once(
    cluster: Cluster, control_plane: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    name = f"cli-{uuid.uuid4().hex[:8]}"
    where = ["--namespace", cluster.namespace, "--kubeconfig", str(control_plane.kubeconfig)]

    async def cli(*args: str) -> tuple[int, str, str]:
        """In-process (its own event loop, in a thread), as fast as a function call."""
        code = await asyncio.to_thread(admin.main, [*where, *args])
        captured = capsys.readouterr()
        return code, captured.out, captured.err

    assert (await cli("create-tenant", name, "--max-concurrent", "2", "--qualities", "mock"))[
        0
    ] == 0
    code, _, err = await cli("create-tenant", name, "--max-concurrent", "2")
    assert code == 1
    assert "already exists" in err
    assert (await cli("create-key", "no-such-tenant"))[0] == 1
    # The one real `python -m api_shim.admin`: the key alone on stdout, once.
    minted = await asyncio.to_thread(
        subprocess.run,
        [sys.executable, "-m", "api_shim.admin", *where, "create-key", name],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "FACECAST_NAMESPACE": "elsewhere"},  # the flag wins
        check=False,
    )
    assert minted.returncode == 0, minted.stderr
    key = minted.stdout.strip()
    assert key.startswith("fc_")
    assert len(key) == 46
    assert key not in minted.stderr
    code, listed, _ = await cli("list-keys", name)
    assert code == 0
    assert key not in listed
    assert key[-4:] in listed
    tenant: Any = cluster.custom.get_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, TENANT.plural, name
    )
    assert key not in json.dumps(tenant)
    assert tenant["spec"]["plan"]["maxConcurrentSessions"] == 2
    async with cluster.api() as http:
        usage = await http.get("/v1/usage", headers={"x-api-key": key})
    assert usage.status_code == 200
    assert usage.json()["concurrency"]["max"] == 2


# --- failures on the way to the cluster ----------------------------------------------------------


async def test_a_secret_that_cannot_be_made_leaves_no_session_behind(
    cluster: Cluster, control_plane: Any, make_request: RequestFactory
) -> None:
    """The API runs as a user allowed everything it needs except creating Secrets: a real
    refusal from the API server, after the AvatarSession already exists."""
    rbac = cluster.rbac
    user = f"limited-{uuid.uuid4().hex[:8]}"
    rules = [
        {
            "apiGroups": [GROUP],
            "resources": [AVATAR_SESSION.plural],
            "verbs": ["get", "list", "create", "patch", "delete"],
        },
        {"apiGroups": [GROUP], "resources": [TENANT.plural], "verbs": ["get", "list"]},
        {"apiGroups": [GROUP], "resources": [AVATAR.plural], "verbs": ["get"]},
    ]
    rbac.create_namespaced_role(cluster.namespace, {"metadata": {"name": user}, "rules": rules})
    rbac.create_namespaced_role_binding(
        cluster.namespace,
        {
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    kubeconfig = control_plane.kubeconfig_for(user, user)
    limited = Kube.from_settings(Settings(kubeconfig=str(kubeconfig), namespace=cluster.namespace))
    try:
        await _until_allowed(limited.ping)
        acme = await cluster.tenant()
        async with cluster.api(kube=limited) as http:
            response = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        error_of(response, 500, "internal", "internal_error")
        assert cluster.sessions_of(acme) == []
    finally:
        await limited.aclose()


async def _until_allowed(call: Callable[[], Awaitable[None]]) -> None:
    """RBAC changes reach the authorizer through an informer: wait until they have."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        try:
            await call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def test_python_m_api_shim_serves_real_http_and_logs_json(
    cluster: Cluster,
    control_plane: Any,
    make_request: RequestFactory,
    worker_token: str,
    tmp_path: Path,
) -> None:
    """The production entry point: uvicorn, settings from FACECAST_*, JSON logs on stdout, and
    the startup objects frozen out of the garbage collector's way."""
    acme = await cluster.tenant()
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    env = {
        **os.environ,
        "FACECAST_KUBECONFIG": str(control_plane.kubeconfig),
        "FACECAST_NAMESPACE": cluster.namespace,
        "FACECAST_HOST": "127.0.0.1",
        "FACECAST_PORT": str(port),
    }
    log_path = tmp_path / "api.log"
    with log_path.open("wb") as log_file:
        server = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "api_shim", stdout=log_file, stderr=log_file, env=env
        )
    try:
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            deadline = time.monotonic() + WAIT_TIMEOUT
            while True:
                assert server.returncode is None, log_path.read_text()
                try:
                    if (await http.get("/healthz")).status_code == 200:
                        break
                except httpx.TransportError:
                    if time.monotonic() > deadline:
                        raise
                await asyncio.sleep(0.1)
            assert (await http.get("/readyz")).status_code == 200
            body = make_request(avatar_id=cluster.avatar(acme))
            created = await http.post("/v1/sessions", json=body, headers=acme.headers)
            assert created.status_code == 201, created.text
            fetched = await http.get(f"/v1/sessions/{created.json()['id']}", headers=acme.headers)
            assert fetched.json()["id"] == created.json()["id"]
    finally:
        server.terminate()
        await asyncio.wait_for(server.wait(), timeout=WAIT_TIMEOUT)
    lines = [json.loads(line) for line in log_path.read_text().splitlines() if line.strip()]
    [starting] = [line for line in lines if line.get("event") == "api_starting"]
    # The startup objects are out of the garbage collector's way (see __main__).
    assert starting["objects_frozen"] > 10_000
    access = [line for line in lines if line.get("event") == "request"]
    assert {line["path"] for line in access} >= {"/healthz", "/readyz", "/v1/sessions"}
    assert all(line["request_id"].startswith("req_") for line in access)
    text = log_path.read_text()
    assert worker_token not in text
    assert acme.key not in text


async def test_ready_when_the_cluster_answers(cluster: Cluster) -> None:
    async with cluster.api() as http:
        response = await http.get("/readyz")
    assert response.status_code == 200
