"""The API's Kubernetes client retries what the API server refused before doing anything (429
or 503 with Retry-After, as client-go does), and only that.

The server here is a stand-in (aiohttp.web), not a Kubernetes API server: the real one's
"storage is (re)initializing" 429 shows only for a moment after a CRD is installed, too briefly
to test on. Everything else about this client is tested on the real control plane."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field

import pytest
from aiohttp import web
from kubernetes import client

from api_shim.errors import ApiError, ErrorType
from api_shim.kube import MAX_RETRIES, Kube, _retry_after

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
async def kube(stand_in: StandIn) -> AsyncIterator[Kube]:
    configuration = client.Configuration()
    configuration.host = stand_in.host
    made = Kube(configuration, "facecast", timeout=5.0)
    yield made
    await made.aclose()


def busy(status: int = 429, retry_after: str | None = "0") -> Reply:
    headers = {} if retry_after is None else {"Retry-After": retry_after}
    return lambda: web.json_response({"kind": "Status"}, status=status, headers=headers)


def ok() -> web.Response:
    return web.json_response({"apiVersion": "v1", "kind": "List", "items": []})


async def test_a_refusal_with_retry_after_is_retried_for_any_method(
    stand_in: StandIn, kube: Kube
) -> None:
    stand_in.replies[:] = [busy(429), busy(503), ok]
    await kube.create_token_secret({"metadata": {"name": "s"}})
    assert stand_in.received == ["POST", "POST", "POST"]


async def test_retries_stop_after_a_few_and_the_caller_gets_503(
    stand_in: StandIn, kube: Kube
) -> None:
    stand_in.replies[:] = [busy(429)]
    with pytest.raises(ApiError) as raised:
        await kube.list_avatars()
    assert raised.value.type is ErrorType.SERVICE_UNAVAILABLE
    assert len(stand_in.received) == MAX_RETRIES + 1


async def test_a_refusal_without_retry_after_is_final(stand_in: StandIn, kube: Kube) -> None:
    stand_in.replies[:] = [busy(503, retry_after=None), ok]
    with pytest.raises(ApiError):
        await kube.list_avatars()
    assert stand_in.received == ["GET"]


def test_retry_after_is_read_capped_and_only_for_429_and_503() -> None:
    assert _retry_after(429, "1") == 1.0
    assert _retry_after(503, "120") == 2.0
    assert _retry_after(500, "1") is None
    assert _retry_after(429, None) is None
    assert _retry_after(429, "Wed, 21 Oct 2026 07:28:00 GMT") is None
