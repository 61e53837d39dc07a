"""Checking that a webhook came from Facecast.

Each delivery carries `Facecast-Signature: t=<unix seconds>,v1=<hex>`, where v1 is
HMAC-SHA256(your signing secret, "<t>.<raw body>"). Verify against the raw body bytes as
received (not re-serialised JSON), and refuse old timestamps, so that a captured delivery
cannot be replayed later.
"""

from __future__ import annotations

import hashlib
import hmac
import time
from typing import Any

from pydantic import BaseModel, ConfigDict

SIGNATURE_HEADER = "Facecast-Signature"
DEFAULT_TOLERANCE_SECONDS = 300


class WebhookSignatureError(Exception):
    """The delivery is not from Facecast, was altered, or is too old: answer 400."""


class WebhookEventData(BaseModel):
    model_config = ConfigDict(extra="ignore", frozen=True)

    session_id: str
    status: str
    reason: str | None
    metadata: dict[str, Any]


class WebhookEvent(BaseModel):
    """`type`: session.queued, .started, .first_frame, .ended (canceled too: see
    `data.status`) or .failed. Delivery is at least once: drop repeats by `id`."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    id: str
    type: str
    created: int
    data: WebhookEventData


def _parse(header: str) -> tuple[int, list[str]]:
    timestamp: int | None = None
    signatures: list[str] = []
    for item in header.split(","):
        key, _, value = item.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            signatures.append(value)
    if timestamp is None or not signatures:
        raise WebhookSignatureError(f"{SIGNATURE_HEADER} needs t=<unix seconds> and v1=<hex>")
    return timestamp, signatures


def verify_signature(
    payload: bytes,
    header: str,
    secret: str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> None:
    """Raise WebhookSignatureError unless `header` signs `payload` with `secret` and its
    timestamp is within `tolerance_seconds` of `now` (default: the clock)."""
    timestamp, signatures = _parse(header)
    current = time.time() if now is None else now
    if abs(current - timestamp) > tolerance_seconds:
        raise WebhookSignatureError(f"the signature's timestamp is outside {tolerance_seconds} s")
    expected = hmac.new(
        secret.encode(), f"{timestamp}.".encode() + payload, hashlib.sha256
    ).hexdigest()
    # Constant-time, so that timing tells an attacker nothing about how close a guess is.
    if not any(hmac.compare_digest(expected, candidate) for candidate in signatures):
        raise WebhookSignatureError("the signature does not match the payload")


def construct_event(
    payload: bytes,
    header: str,
    secret: str,
    *,
    tolerance_seconds: float = DEFAULT_TOLERANCE_SECONDS,
    now: float | None = None,
) -> WebhookEvent:
    """The verified event; WebhookSignatureError if it is not one."""
    verify_signature(payload, header, secret, tolerance_seconds=tolerance_seconds, now=now)
    return WebhookEvent.model_validate_json(payload)
