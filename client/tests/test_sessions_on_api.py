"""Sessions, usage and errors through the client, over real HTTP to the real API process on the
real kube-apiserver. No operator runs here, so sessions stay `created`."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client

import facecast
from avatar_crds.ids import to_resource_name
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from client.tests.harness import WORKER_TOKEN, RunningApi, session_request
from testbed.tenants import TenantKey, new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

README = (Path(__file__).resolve().parents[2] / "README.md").read_text()


def sync_client(api: RunningApi, tenant: TenantKey, **options: Any) -> facecast.Facecast:
    return facecast.Facecast(api_key=tenant.key, base_url=api.url, **options)


def session_resource(api_client: client.ApiClient, api: RunningApi, session_id: str) -> Any:
    return client.CustomObjectsApi(api_client).get_namespaced_custom_object(
        GROUP, VERSION, api.namespace, AVATAR_SESSION.plural, to_resource_name(session_id, "sess")
    )


async def test_a_session_from_create_to_cancel(api: RunningApi, public_avatar: str) -> None:
    acme = await new_tenant(api.kube)
    with sync_client(api, acme) as fc:
        created = fc.sessions.create(session_request(public_avatar, metadata={"ticket": "T-1"}))
        assert isinstance(created, facecast.Session)
        assert created.id.startswith("sess_")
        assert created.status == "created"
        assert created.avatar_id == public_avatar
        assert created.metadata == {"ticket": "T-1"}
        assert created.max_duration_seconds == 600  # the server's default applied
        assert isinstance(created.transport, facecast.models.LiveKitTransportView)
        assert created.transport.worker_token == "[redacted]"
        assert str(created.request_id).startswith("req_")
        assert not created.idempotent_replayed
        assert WORKER_TOKEN not in repr(session_request(public_avatar))

        fetched = fc.sessions.get(created.id)
        assert (fetched.id, fetched.created_at) == (created.id, created.created_at)
        assert fetched.request_id != created.request_id

        kept = fc.sessions.keep_alive(created.id)
        assert kept.keep_alive_at is not None
        ended = fc.sessions.end(created.id)
        assert ended.end_requested_at is not None
        assert fc.sessions.end(created.id).end_requested_at == ended.end_requested_at

        with pytest.raises(facecast.ConflictError) as refused:
            fc.sessions.keep_alive(created.id)
        assert (refused.value.status, refused.value.code) == (409, "session_not_active")

        canceled = fc.sessions.cancel(created.id)
        assert canceled.id == created.id


async def test_list_and_list_all_page_through_every_session(
    api: RunningApi, public_avatar: str
) -> None:
    acme = await new_tenant(api.kube)
    async with facecast.AsyncFacecast(api_key=acme.key, base_url=api.url) as fc:
        made = [(await fc.sessions.create(session_request(public_avatar))).id for _ in range(5)]
        first = await fc.sessions.list(limit=2)
        assert first.has_more
        assert first.next_cursor == first.data[-1].id
        assert [s.id for s in first.data] == made[::-1][:2]  # newest first
        everything = [s.id async for s in fc.sessions.list_all(page_size=2)]
        assert everything == made[::-1]
        created_only = [s.id async for s in fc.sessions.list_all(status="created")]
        assert created_only == made[::-1]
        assert [s async for s in fc.sessions.list_all(status="running")] == []


async def test_usage(api: RunningApi, public_avatar: str) -> None:
    acme = await new_tenant(api.kube, max_concurrent=7, minutes=42)
    async with facecast.AsyncFacecast(api_key=acme.key, base_url=api.url) as fc:
        await fc.sessions.create(session_request(public_avatar))
        usage = await fc.usage.get()
    assert isinstance(usage, facecast.Usage)
    assert (usage.concurrency.current, usage.concurrency.max) == (1, 7)
    assert usage.concurrency.available == 6
    assert usage.minutes.included == 42


async def test_an_idempotent_create_replays_the_same_session(
    api: RunningApi, public_avatar: str
) -> None:
    acme = await new_tenant(api.kube)
    with sync_client(api, acme) as fc:
        first = fc.sessions.create(session_request(public_avatar), idempotency_key="order-77")
        again = fc.sessions.create(session_request(public_avatar), idempotency_key="order-77")
        assert again.id == first.id
        assert (first.idempotent_replayed, again.idempotent_replayed) == (False, True)
        with pytest.raises(facecast.ConflictError) as reused:
            fc.sessions.create(
                session_request(public_avatar, quality="mock"), idempotency_key="order-77"
            )
        assert reused.value.code == "idempotency_key_reused"
        listed = fc.sessions.list(limit=100)
    assert [s.id for s in listed.data] == [first.id]


async def test_a_create_without_a_key_still_sends_a_fresh_one(
    api: RunningApi, public_avatar: str, api_client: client.ApiClient
) -> None:
    """The API labels a session made with an Idempotency-Key; two calls are two keys."""
    acme = await new_tenant(api.kube)
    sent: list[str] = []

    def record(outgoing: httpx.Request) -> None:
        sent.append(outgoing.headers.get("Idempotency-Key", ""))

    http = httpx.Client(base_url=api.url, event_hooks={"request": [record]})
    with sync_client(api, acme, http_client=http) as fc:
        one = fc.sessions.create(session_request(public_avatar))
        two = fc.sessions.create(session_request(public_avatar))
    assert one.id != two.id
    assert len(set(sent)) == 2, sent
    assert all(sent), sent
    for session in (one, two):
        labels = session_resource(api_client, api, session.id)["metadata"]["labels"]
        assert "facecast.io/idempotency-key-hash" in labels


async def test_errors_are_typed(api: RunningApi, public_avatar: str) -> None:
    acme = await new_tenant(api.kube, qualities=("lite",), max_duration=600)
    with sync_client(api, acme, retries=facecast.NO_RETRIES) as fc:
        cases: list[tuple[Any, type[facecast.FacecastError], int, str, str | None]] = [
            (
                lambda: fc.sessions.get("sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"),
                facecast.NotFoundError,
                404,
                "session_not_found",
                None,
            ),
            (
                lambda: fc.sessions.create(session_request("av_not-an-id")),
                facecast.InvalidRequestError,
                400,
                "invalid_parameter",
                "avatar_id",
            ),
            (
                lambda: fc.sessions.create(session_request(public_avatar, quality="mock")),
                facecast.PermissionDeniedError,
                403,
                "quality_not_allowed",
                "quality",
            ),
            (
                lambda: fc.sessions.create(
                    session_request(public_avatar, max_duration_seconds=3600)
                ),
                facecast.UnprocessableError,
                422,
                "max_duration_exceeds_plan",
                "max_duration_seconds",
            ),
            (
                lambda: fc.avatars.get("av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"),
                facecast.NotFoundError,
                404,
                "avatar_not_found",
                None,
            ),
        ]
        for call, kind, status, code, param in cases:
            with pytest.raises(kind) as raised:
                call()
            error = raised.value
            assert (error.status, error.code) == (status, code), error
            if param is not None:
                assert error.param == param
            assert str(error.request_id).startswith("req_")
            assert error.retry_after is None
    stranger = sync_client(api, TenantKey(acme.name, "fc_not-a-key"))
    with stranger, pytest.raises(facecast.AuthenticationError) as anonymous:
        stranger.usage.get()
    assert (anonymous.value.status, anonymous.value.code) == (401, "invalid_api_key")
    assert "fc_not-a-key" not in str(anonymous.value)


async def test_the_readme_example_runs(api: RunningApi, public_avatar: str) -> None:
    """The three lines of README.md's "Python client", as written, against the real API."""
    section = README.split("## Python client", 1)[1]
    example = section.split("```python\n", 1)[1].split("```", 1)[0]
    acme = await new_tenant(api.kube, qualities=("mock",))
    example = example.replace('"fc_..."', repr(acme.key)).replace(
        '"http://127.0.0.1:8080"', repr(api.url)
    )
    scope: dict[str, Any] = {
        "facecast": facecast,
        "AVATAR_ID": public_avatar,
        "LIVEKIT_URL": "wss://rtc.example.com",
        "WORKER_TOKEN": WORKER_TOKEN,
    }
    exec(example, scope)
    session = scope["session"]
    assert isinstance(session, facecast.Session)
    with sync_client(api, acme) as fc:
        assert fc.sessions.get(session.id).end_requested_at is not None
    scope["client"].close()
