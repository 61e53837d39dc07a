"""The client's retries against the real API refusing for real: 429 `concurrency_limit_reached`
(a tenant at its limit) and 503 `at_capacity` (the namespace's queue full), each with the
Retry-After the API sets. The injected sleep records the waits and, while "waiting", frees the
place the way a customer would (cancelling the session that holds it), so the retry succeeds."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import httpx
import pytest

import facecast
from client.tests.harness import ApiFactory, RunningApi, session_request
from testbed.tenants import new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

CONCURRENCY_RETRY_AFTER = 2
AT_CAPACITY_RETRY_AFTER = 1


@pytest.fixture(scope="module")
def concurrency_api(start_api: ApiFactory) -> Iterator[RunningApi]:
    with start_api(CONCURRENCY_RETRY_AFTER_SECONDS=str(CONCURRENCY_RETRY_AFTER)) as running:
        yield running


@pytest.fixture(scope="module")
def capacity_api(start_api: ApiFactory) -> Iterator[RunningApi]:
    """One session may wait in this API's namespace; the next is 503 at_capacity."""
    settings = {"MAX_QUEUED": "1", "AT_CAPACITY_RETRY_AFTER_SECONDS": str(AT_CAPACITY_RETRY_AFTER)}
    with start_api(**settings) as running:
        yield running


def recording_http(api: RunningApi, keys: list[str]) -> httpx.Client:
    def record(outgoing: httpx.Request) -> None:
        keys.append(outgoing.headers.get("Idempotency-Key", ""))

    return httpx.Client(base_url=api.url, event_hooks={"request": [record]})


async def test_a_429_is_retried_after_its_retry_after_with_the_same_key(
    concurrency_api: RunningApi, avatar_in: Callable[[RunningApi], str]
) -> None:
    avatar = avatar_in(concurrency_api)
    acme = await new_tenant(concurrency_api.kube, max_concurrent=1)
    holder = facecast.Facecast(api_key=acme.key, base_url=concurrency_api.url)
    first = holder.sessions.create(session_request(avatar))
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 1:
            holder.sessions.cancel(first.id)

    keys: list[str] = []
    retrying = facecast.Facecast(
        api_key=acme.key,
        base_url=concurrency_api.url,
        retries=facecast.RetryPolicy(max_attempts=5, max_wait=10.0),
        sleep=sleep,
        http_client=recording_http(concurrency_api, keys),
    )
    with holder, retrying:
        second = retrying.sessions.create(session_request(avatar))
    assert second.id != first.id
    assert waits
    assert set(waits) == {float(CONCURRENCY_RETRY_AFTER)}
    assert len(keys) == len(waits) + 1  # one request per attempt
    assert len(set(keys)) == 1  # the same Idempotency-Key every time
    assert keys[0]


async def test_without_retries_or_past_max_wait_the_429_reaches_the_caller(
    concurrency_api: RunningApi, avatar_in: Callable[[RunningApi], str]
) -> None:
    avatar = avatar_in(concurrency_api)
    acme = await new_tenant(concurrency_api.kube, max_concurrent=1)
    waits: list[float] = []
    policies = [facecast.NO_RETRIES, facecast.RetryPolicy(max_wait=CONCURRENCY_RETRY_AFTER - 0.5)]
    with facecast.Facecast(api_key=acme.key, base_url=concurrency_api.url) as fc:
        fc.sessions.create(session_request(avatar))
        for policy in policies:
            refusing = facecast.Facecast(
                api_key=acme.key, base_url=concurrency_api.url, retries=policy, sleep=waits.append
            )
            with refusing, pytest.raises(facecast.QuotaExceededError) as refused:
                refusing.sessions.create(session_request(avatar))
            assert (refused.value.status, refused.value.code) == (429, "concurrency_limit_reached")
            assert refused.value.retry_after == CONCURRENCY_RETRY_AFTER
    assert waits == []


async def test_a_503_at_capacity_is_retried_after_its_retry_after(
    capacity_api: RunningApi, avatar_in: Callable[[RunningApi], str]
) -> None:
    avatar = avatar_in(capacity_api)
    acme = await new_tenant(capacity_api.kube)
    waits: list[float] = []
    holder = facecast.AsyncFacecast(
        api_key=acme.key, base_url=capacity_api.url, retries=facecast.NO_RETRIES
    )
    async with holder:
        waiting = await holder.sessions.create(session_request(avatar))

        async def sleep(seconds: float) -> None:
            waits.append(seconds)
            if len(waits) == 1:
                await holder.sessions.cancel(waiting.id)

        async with facecast.AsyncFacecast(
            api_key=acme.key,
            base_url=capacity_api.url,
            retries=facecast.RetryPolicy(max_attempts=5),
            sleep=sleep,
        ) as retrying:
            admitted = await retrying.sessions.create(session_request(avatar))
            assert admitted.status == "created"
            with pytest.raises(facecast.ServiceUnavailableError) as full:
                await holder.sessions.create(session_request(avatar))
    assert waits
    assert set(waits) == {float(AT_CAPACITY_RETRY_AFTER)}
    assert (full.value.status, full.value.code) == (503, "at_capacity")
    assert full.value.retry_after == AT_CAPACITY_RETRY_AFTER
