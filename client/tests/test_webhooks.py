"""The client's webhook verifier against real deliveries: the operator's own WebhookSender posts
a signed event to an HTTP endpoint on loopback, which checks it with `facecast`."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime

import pytest
from aiohttp import web

import facecast
from avatar_crds.enums import Phase, WebhookEvent
from avatar_crds.session import AvatarSession, PendingWebhook
from avatar_operator.webhooks import SIGNATURE_HEADER, WebhookSender, sign
from facecast.webhooks import SIGNATURE_HEADER as CLIENT_SIGNATURE_HEADER
from testbed.objects import session_manifest

SECRET = "whsec-client-tests"
DEADLINE_SECONDS = 10.0


@asynccontextmanager
async def endpoint(received: list[tuple[bytes, str]], reached: asyncio.Event) -> AsyncIterator[str]:
    async def handle(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers[CLIENT_SIGNATURE_HEADER]))
        reached.set()
        return web.Response(status=204)

    app = web.Application()
    app.router.add_post("/hook", handle)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    try:
        yield f"http://127.0.0.1:{runner.addresses[0][1]}/hook"
    finally:
        await runner.cleanup()


async def deliver() -> tuple[bytes, str]:
    """One `session.ended` event, as the operator sends it."""
    session = AvatarSession.model_validate(
        session_manifest(
            spec={"metadata": {"ticket": "T-9"}}, status={"phase": "ended", "reason": "user_ended"}
        )
    )
    pending = PendingWebhook(
        event=WebhookEvent.ENDED, phase=Phase.ENDED, occurred_at=datetime.now(UTC)
    )
    received: list[tuple[bytes, str]] = []
    reached = asyncio.Event()
    async with endpoint(received, reached) as url:
        sender = WebhookSender(max_attempts=1, timeout=5.0)
        sender.send(url, SECRET, pending, session, on_done=lambda: None)
        await asyncio.wait_for(reached.wait(), DEADLINE_SECONDS)
        await sender.close()
    [delivery] = received
    return delivery


def test_a_real_delivery_verifies_and_parses() -> None:
    body, signature = asyncio.run(deliver())
    assert CLIENT_SIGNATURE_HEADER == SIGNATURE_HEADER
    event = facecast.construct_event(body, signature, SECRET)
    assert event.type == "session.ended"
    assert event.id.startswith("evt_")
    assert event.data.session_id.startswith("sess_")
    assert (event.data.status, event.data.reason) == ("ended", "user_ended")
    assert event.data.metadata == {"ticket": "T-9"}


def test_a_wrong_secret_an_altered_body_or_an_old_signature_is_refused() -> None:
    body, signature = asyncio.run(deliver())
    with pytest.raises(facecast.WebhookSignatureError):
        facecast.verify_signature(body, signature, "another-secret")
    with pytest.raises(facecast.WebhookSignatureError):
        facecast.verify_signature(body.replace(b"T-9", b"T-8"), signature, SECRET)
    signed_at = int(signature.split(",")[0].removeprefix("t="))
    facecast.verify_signature(body, signature, SECRET, now=signed_at + 300)
    with pytest.raises(facecast.WebhookSignatureError, match="timestamp"):
        facecast.verify_signature(body, signature, SECRET, now=signed_at + 301)
    with pytest.raises(facecast.WebhookSignatureError, match="timestamp"):
        facecast.verify_signature(body, signature, SECRET, now=signed_at - 301)


def test_a_signature_is_checked_against_its_own_timestamp() -> None:
    """Moving `t` (to pass the window) breaks the signature; several v1 values (a secret being
    rotated) pass if one matches; a header without t or v1 is refused."""
    body = b'{"id":"evt_1"}'
    now = int(time.time())
    signature = sign(SECRET, now - 1000, body)
    moved = signature.replace(f"t={now - 1000}", f"t={now}")
    with pytest.raises(facecast.WebhookSignatureError, match="does not match"):
        facecast.verify_signature(body, moved, SECRET)
    current = sign(SECRET, now, body)
    rotated = f"t={now},v1={'0' * 64},{current.split(',')[1]}"
    facecast.verify_signature(body, rotated, SECRET)
    for header in ("", f"t={now}", "v1=abc", f"t=soon,{current.split(',')[1]}"):
        with pytest.raises(facecast.WebhookSignatureError):
            facecast.verify_signature(body, header, SECRET)
