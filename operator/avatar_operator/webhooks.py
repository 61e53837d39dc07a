"""Signed, retried webhooks to the tenant's endpoint.

Signature (like Stripe's): header `Facecast-Signature: t=<unix seconds>,v1=<hex>` where
v1 = HMAC-SHA256(secret, f"{t}.{body}"). Receivers recompute it and reject old timestamps.
Deliveries live in memory: a restart drops the ones still retrying (noted in the README).
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import time
from dataclasses import dataclass
from typing import Any

import httpx
import structlog

from avatar_crds import ids
from avatar_crds.session import AvatarSession

SIGNATURE_HEADER = "Facecast-Signature"
log = structlog.get_logger("avatar_operator.webhooks")


def sign(secret: str, timestamp: int, body: bytes) -> str:
    digest = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={digest.hexdigest()}"


def verify(secret: str, header: str, body: bytes) -> bool:
    parts = dict(item.split("=", 1) for item in header.split(",") if "=" in item)
    expected = sign(secret, int(parts.get("t", "0")), body)
    return hmac.compare_digest(expected, header)


def payload(event: str, session: AvatarSession, now: float) -> dict[str, Any]:
    """The JSON body: which session, what happened, and the customer's metadata echoed."""
    name = session.metadata.name or ""
    status = session.status
    return {
        "id": f"evt_{hashlib.sha256(f'{name}:{event}'.encode()).hexdigest()[:24]}",
        "type": event,
        "created": int(now),
        "data": {
            "session_id": ids.to_public_id(name),
            "status": str(status.phase or "created"),
            "reason": str(status.reason) if status.reason else None,
            "metadata": session.spec.metadata,
        },
    }


@dataclass(frozen=True)
class Delivery:
    url: str
    secret: str
    body: bytes
    session: str


class WebhookSender:
    """Delivers in the background with exponential backoff; never blocks reconciliation."""

    def __init__(self, max_attempts: int, timeout: float, first_backoff: float = 1.0) -> None:
        self.max_attempts = max_attempts
        self.first_backoff = first_backoff
        self.http = httpx.AsyncClient(timeout=timeout, follow_redirects=False)
        self.tasks: set[asyncio.Task[None]] = set()

    def send(self, url: str, secret: str, body: dict[str, Any], session: str) -> None:
        data = json.dumps(body, separators=(",", ":"), sort_keys=True).encode()
        task = asyncio.create_task(self._deliver(Delivery(url, secret, data, session)))
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def _deliver(self, delivery: Delivery) -> None:
        backoff = self.first_backoff
        for attempt in range(1, self.max_attempts + 1):
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
                    log.info("webhook_delivered", session=delivery.session, attempt=attempt)
                    return
                outcome = f"HTTP {response.status_code}"
            except httpx.HTTPError as exc:
                outcome = type(exc).__name__
            log.warning("webhook_retry", session=delivery.session, attempt=attempt, outcome=outcome)
            if attempt < self.max_attempts:
                await asyncio.sleep(backoff)  # backoff between deliveries, not a test wait
                backoff *= 2
        log.error("webhook_gave_up", session=delivery.session, attempts=self.max_attempts)

    async def close(self) -> None:
        for task in list(self.tasks):
            task.cancel()
        await self.http.aclose()
