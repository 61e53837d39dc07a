"""KubeClient where the real API server cannot be made to show it: it retries what the API
server refused before doing anything (429 or 503 with Retry-After, as client-go does), and only
that; and its watch takes events as large as any object, and reports an expired version
whether the refusal comes as the reply's status or as an ERROR event in the stream.

The server here is a stand-in (aiohttp.web), not a Kubernetes API server: the real one's
"storage is (re)initializing" 429 shows only for a moment after a CRD is installed, its
expired-version error only after a compaction, and its objects are capped below the
size worth testing by their schemas. Everything else about this client is tested on the real
control plane (test_on_control_plane.py)."""

from __future__ import annotations

import json
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from kubernetes import client

from facecast_kube import ExpiredError, KubeClient, KubeError
from facecast_kube.retries import MAX_RETRIES, retry_after

pytestmark = pytest.mark.anyio

Reply = Callable[[], web.Response]


@dataclass
class StandIn:
    host: str
    replies: list[Reply] = field(default_factory=list)  # in order; the last one repeats
    received: list[str] = field(default_factory=list)  # the methods of the requests

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append(request.method)
        return self.replies[min(len(self.received), len(self.replies)) - 1]()


@pytest.fixture
async def stand_in() -> AsyncIterator[StandIn]:
    server = StandIn(host="")
    app = web.Application()
    app.router.add_route("*", "/{tail:.*}", server.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    server.host = f"http://127.0.0.1:{port}"
    yield server
    await runner.cleanup()


@pytest.fixture
async def kube(stand_in: StandIn) -> AsyncIterator[KubeClient]:
    configuration = client.Configuration()
    configuration.host = stand_in.host
    made = KubeClient(configuration, timeout=5.0)
    yield made
    await made.close()


def busy(status: int = 429, retry_after: str | None = "0") -> Reply:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return lambda: web.json_response({"kind": "Status"}, status=status, headers=headers)


def ok() -> web.Response:
    return web.json_response({"apiVersion": "v1", "kind": "List", "items": []})


async def test_a_refusal_with_retry_after_is_retried_for_any_method(
    stand_in: StandIn, kube: KubeClient
) -> None:
    stand_in.replies[:] = [busy(429), busy(503), ok]
    await kube.request("POST", "/api/v1/namespaces/facecast/secrets", body={}, read=False)
    assert stand_in.received == ["POST", "POST", "POST"]


async def test_retries_stop_after_a_few_and_the_caller_gets_the_refusal(
    stand_in: StandIn, kube: KubeClient
) -> None:
    stand_in.replies[:] = [busy(429)]
    with pytest.raises(KubeError) as raised:
        await kube.request("GET", "/apis/facecast.io/v1alpha1/namespaces/facecast/avatars")
    assert raised.value.status == 429
    assert len(stand_in.received) == MAX_RETRIES + 1


async def test_a_refusal_without_retry_after_is_final(stand_in: StandIn, kube: KubeClient) -> None:
    stand_in.replies[:] = [busy(503, retry_after=None), ok]
    with pytest.raises(KubeError) as raised:
        await kube.request("GET", "/apis/facecast.io/v1alpha1/namespaces/facecast/avatars")
    assert raised.value.status == 503
    assert stand_in.received == ["GET"]


def test_retry_after_is_read_capped_and_only_for_429_and_503() -> None:
    assert retry_after(429, "1") == 1.0
    assert retry_after(503, "120") == 2.0
    assert retry_after(500, "1") is None
    assert retry_after(429, None) is None
    assert retry_after(429, "Wed, 21 Oct 2026 07:28:00 GMT") is None


def watch_reply(*events: dict[str, Any]) -> Reply:
    body = "".join(json.dumps(event) + "\n" for event in events)
    return lambda: web.Response(body=body, content_type="application/json")


async def test_a_watch_passes_on_events_of_any_size_and_reports_an_expired_version(
    stand_in: StandIn, kube: KubeClient
) -> None:
    """aiohttp's line reader stops at twice its buffer (512 KiB by default); an object may be
    1.5 MiB in etcd. An ERROR event with code 410 means: list again."""
    large = {"metadata": {"name": "big", "resourceVersion": "7"}, "data": "x" * 2_000_000}
    stand_in.replies[:] = [
        watch_reply(
            {"type": "ADDED", "object": large},
            {"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "8"}}},
            {"type": "ERROR", "object": {"kind": "Status", "code": 410, "reason": "Expired"}},
        )
    ]
    seen: list[tuple[str, str]] = []

    async def watch() -> None:
        async with kube.watch("/api/v1/pods", version="6", seconds=5) as events:
            async for kind, raw in events:
                seen.append((kind, raw["metadata"]["resourceVersion"]))

    with pytest.raises(ExpiredError):
        await watch()
    assert seen == [("ADDED", "7"), ("BOOKMARK", "8")]


async def test_a_watch_refused_as_expired_is_reported_as_expired(
    stand_in: StandIn, kube: KubeClient
) -> None:
    stand_in.replies[:] = [
        lambda: web.json_response({"kind": "Status", "code": 410}, status=410, reason="Gone")
    ]
    with pytest.raises(ExpiredError):
        await _enter_watch(kube)


async def _enter_watch(kube: KubeClient) -> None:
    async with kube.watch("/api/v1/pods", version="6", seconds=5):
        pass
