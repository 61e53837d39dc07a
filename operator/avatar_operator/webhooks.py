"""Signed, retried webhooks to the tenant's endpoint.

Signature (like Stripe's): header `Facecast-Signature: t=<unix seconds>,v1=<hex>` where
v1 = HMAC-SHA256(secret, f"{t}.{body}"). Receivers recompute it and reject old timestamps.

Delivery is at least once. The events waiting for delivery are listed in the session's status
(written with the transition that caused them), so an operator that restarts sends again the
ones still being retried; an event's `id` is stable, for receivers to drop a repeat. Attempts
keep to one schedule counted from the event (0, b, 3b, 7b, ... seconds after it), so that a
restart carries the schedule on rather than starting it over.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from avatar_crds import ids
from avatar_crds.session import AvatarSession, PendingWebhook

SIGNATURE_HEADER = "Facecast-Signature"
log = structlog.get_logger("avatar_operator.webhooks")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    expected = sign(secret, int(parts.get("t", "0")), body)
    return hmac.compare_digest(expected, header)


def payload(pending: PendingWebhook, session: AvatarSession) -> dict[str, Any]:
    """The JSON body: which session, what happened and when, and the customer's metadata
    echoed. The status is the one the event reports, even if the session has moved on since;
    a speak event's task and an ending_soon event's cutoff are as they were then."""
    name = session.metadata.name or ""
    event = str(pending.event)
    reason: str | None = None
    if pending.phase.is_terminal and session.status.reason:  # final once set
        reason = str(session.status.reason)
    data: dict[str, Any] = {
        "session_id": ids.to_public_id(name),
        "status": str(pending.phase),
        "reason": reason,
        "metadata": session.spec.metadata,
    }
    if pending.speak is not None:
        task = pending.speak.model_dump(mode="json")
        fields = ("id", "state", "started_at", "finished_at", "message")
        data["speak"] = {name: task.get(name) for name in fields}  # null ones too
    if pending.ending_soon is not None:
        data["reason"] = str(pending.ending_soon.reason)
        data["at"] = pending.ending_soon.model_dump(mode="json")["at"]
    return {
        "id": event_id(name, pending),
        "type": event,
        "created": int(pending.occurred_at.timestamp()),
        "data": data,
    }


def event_id(session_name: str, pending: PendingWebhook) -> str:
    """Stable across retries and restarts, for receivers to drop a repeat; distinct for each
    speak task, and for each cutoff warned of (a later approach is a new warning)."""
    parts = [session_name, str(pending.event)]
    if pending.task:
        parts.append(pending.task)
    if pending.ending_soon is not None:
        warned = pending.ending_soon
        parts += [str(warned.reason), warned.at.isoformat()]
    return f"evt_{hashlib.sha256(':'.join(parts).encode()).hexdigest()[:24]}"


def due_after(attempt: int, first_backoff: float) -> float:
    """Seconds after the event when attempt `attempt` (counted from 1) is due."""
    return first_backoff * ((1 << (attempt - 1)) - 1)


def resume_at(age: float, first_backoff: float, max_attempts: int) -> int:
    """The attempt to start with for an event `age` seconds old: the last one already due.
    Attempts are not recorded, so this is what keeps an operator that restarts (or crashes in
    a loop) from granting an event a fresh set of them; it still tries at least once."""
    attempt = 1
    while attempt < max_attempts and due_after(attempt + 1, first_backoff) <= age:
        attempt += 1
    return attempt


@dataclass(frozen=True)
class Delivery:
    url: str
    secret: str
    body: bytes
    session: str
    pending: PendingWebhook


class WebhookSender:
    """Delivers in the background with exponential backoff; never blocks reconciliation."""

    def __init__(self, max_attempts: int, timeout: float, first_backoff: float = 1.0) -> None:
        self.max_attempts = max_attempts
        self.first_backoff = first_backoff
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.tasks: set[asyncio.Task[None]] = set()

    def send(
        self,
        url: str,
        secret: str,
        pending: PendingWebhook,
        session: AvatarSession,
        *,
        on_done: Callable[[], None],
    ) -> None:
        """`on_done` is called once the event is delivered or given up on, not if the sender
        is closed first: then the event is still pending."""
        body = payload(pending, session)
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        name = session.metadata.name or ""
        delivery = Delivery(url, secret, data, name, pending)
        task = asyncio.create_task(self._deliver(delivery))
        self.tasks.add(task)

        def finished(task: asyncio.Task[None]) -> None:
            self.tasks.discard(task)
            if task.cancelled():
                return
            if task.exception() is not None:  # a bug, or a URL httpx refuses outright
                log.error("webhook_failed", session=name, error=repr(task.exception()))
            on_done()

        task.add_done_callback(finished)

    async def _deliver(self, delivery: Delivery) -> None:
        occurred = delivery.pending.occurred_at.timestamp()
        first = resume_at(time.time() - occurred, self.first_backoff, self.max_attempts)
        for attempt in range(first, self.max_attempts + 1):
            if attempt > first:  # the backoff between deliveries, not a test wait
                due = occurred + due_after(attempt, self.first_backoff)
                await asyncio.sleep(max(0.0, due - time.time()))
            timestamp = int(time.time())
            headers = {
                "Content-Type": "application/json",
                SIGNATURE_HEADER: sign(delivery.secret, timestamp, delivery.body),
            }
            try:
                response = await self.http.post(
                    delivery.url, content=delivery.body, headers=headers
                )
                if response.status_code < 300:
                    log.info(
                        "webhook_delivered",
                        session=delivery.session,
                        webhook_event=str(delivery.pending.event),
                        attempt=attempt,
                    )
                    return
                outcome = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            log.warning(
                "webhook_retry",
                session=delivery.session,
                webhook_event=str(delivery.pending.event),
                attempt=attempt,
                outcome=outcome,
            )
        log.error(
            "webhook_gave_up",
            session=delivery.session,
            webhook_event=str(delivery.pending.event),
            attempts=self.max_attempts,
        )

    async def close(self) -> None:
        """Stop delivering. What was still on its way stays pending (`on_done` is not called)."""
        tasks = list(self.tasks)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        await self.http.aclose()
