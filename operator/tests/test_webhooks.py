"""The webhook sender's promise to the reconciler (it says when an event is finished with, and
only then), and what a payload reports. Deliveries go to a real HTTP server on loopback."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta

import pytest
from aiohttp import web

from avatar_crds.enums import Phase, WebhookEvent
from avatar_crds.session import AvatarSession, PendingWebhook
from avatar_operator.webhooks import (
    SIGNATURE_HEADER,
    WebhookSender,
    payload,
    resume_at,
    verify,
)
from testbed.objects import session_manifest

SECRET = "whsec-unit"
DEADLINE_SECONDS = 10.0
SESSION = AvatarSession.model_validate(
    session_manifest(
        spec={"metadata": {"order": 7}}, status={"phase": "failed", "reason": "pod_failed"}
    )
)


def queued(at: datetime) -> PendingWebhook:
    return PendingWebhook(event=WebhookEvent.QUEUED, phase=Phase.QUEUED, occurred_at=at)


class Endpoint:
    """Answers every delivery with `status`; records the bodies and signatures it got."""

    def __init__(self, status: int) -> None:
        self.status = status
        self.received: list[tuple[bytes, str]] = []
        self.reached = asyncio.Event()

    async def handle(self, request: web.Request) -> web.Response:
        self.received.append((await request.read(), request.headers[SIGNATURE_HEADER]))
        self.reached.set()
        return web.Response(status=self.status)


@asynccontextmanager
async def serve(endpoint: Endpoint) -> AsyncIterator[str]:
    app = web.Application()
    app.router.add_post("/hook", endpoint.handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    try:
        yield f"http://127.0.0.1:{port}/hook"
    finally:
        await runner.cleanup()


async def deliver(
    status: int, *, max_attempts: int, age: timedelta = timedelta(0)
) -> tuple[Endpoint, int]:
    """One event, `age` old, to an endpoint answering `status`: what it received, and how many
    times the sender said it was finished with it."""
    endpoint = Endpoint(status)
    done = asyncio.Event()
    calls = 0

    def on_done() -> None:
        nonlocal calls
        calls += 1
        done.set()

    async with serve(endpoint) as url:
        sender = WebhookSender(max_attempts, timeout=5.0, first_backoff=0.01)
        sender.send(url, SECRET, queued(datetime.now(UTC) - age), SESSION, on_done=on_done)
        await asyncio.wait_for(done.wait(), DEADLINE_SECONDS)
        await sender.close()
    return endpoint, calls


def test_a_delivered_event_is_finished_with_once() -> None:
    endpoint, calls = asyncio.run(deliver(204, max_attempts=3))
    assert calls == 1
    [(body, signature)] = endpoint.received
    assert verify(SECRET, signature, body)


def test_an_event_given_up_on_is_finished_with_after_every_attempt() -> None:
    endpoint, calls = asyncio.run(deliver(500, max_attempts=3))
    assert calls == 1
    assert len(endpoint.received) == 3


def test_an_event_left_over_from_before_a_restart_goes_on_with_its_schedule() -> None:
    # Long past its last attempt's time (5 attempts at 0.01 s backoff end 0.15 s after it):
    # one more attempt, not a fresh five.
    endpoint, calls = asyncio.run(deliver(500, max_attempts=5, age=timedelta(hours=1)))
    assert calls == 1
    assert len(endpoint.received) == 1


@pytest.mark.parametrize(
    ("age", "attempt"),
    [(0.0, 1), (0.99, 1), (1.0, 2), (2.99, 2), (3.0, 3), (10.0, 4), (15.0, 5), (86_400.0, 5)],
)
def test_an_event_resumes_at_the_last_attempt_already_due(age: float, attempt: int) -> None:
    # Attempts are due 0, 1, 3, 7 and 15 s after the event (first backoff 1 s).
    assert resume_at(age, first_backoff=1.0, max_attempts=5) == attempt


def test_an_event_still_retrying_when_the_sender_closes_stays_pending() -> None:
    async def scenario() -> tuple[int, int]:
        endpoint = Endpoint(500)
        calls = 0

        def on_done() -> None:
            nonlocal calls
            calls += 1

        async with serve(endpoint) as url:
            # A long backoff: the second attempt never comes before the close.
            sender = WebhookSender(5, timeout=5.0, first_backoff=60.0)
            sender.send(url, SECRET, queued(datetime.now(UTC)), SESSION, on_done=on_done)
            await asyncio.wait_for(endpoint.reached.wait(), DEADLINE_SECONDS)
            await sender.close()
        return len(endpoint.received), calls

    attempts, calls = asyncio.run(scenario())
    assert attempts == 1
    assert calls == 0  # the reconciler keeps it pending, and a restart sends it again


@pytest.mark.parametrize(
    ("event", "phase", "reason"),
    [
        (WebhookEvent.QUEUED, Phase.QUEUED, None),  # the session has failed since
        (WebhookEvent.FAILED, Phase.FAILED, "pod_failed"),
    ],
)
def test_a_payload_reports_the_event_as_it_happened(
    event: WebhookEvent, phase: Phase, reason: str | None
) -> None:
    at = datetime(2026, 11, 21, 12, 0, 5, tzinfo=UTC)
    body = payload(PendingWebhook(event=event, phase=phase, occurred_at=at), SESSION)
    assert body["type"] == str(event)
    assert body["created"] == int(at.timestamp())
    assert body["data"] == {
        "session_id": "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3",
        "status": str(phase),
        "reason": reason,
        "metadata": {"order": 7},
    }
    again = payload(PendingWebhook(event=event, phase=phase, occurred_at=at), SESSION)
    assert again["id"] == body["id"]  # stable, for receivers to drop a repeat
