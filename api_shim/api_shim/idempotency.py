"""Idempotency-Key for POST /v1/sessions, stored on the created resource itself so it survives
API restarts and needs no other store: a label holds a hash of (tenant, key) to find it, an
annotation a fingerprint of the request to tell a replay from a reused key.

Only successful creations are remembered: a request refused with an error created nothing, so
repeating it with the same key is evaluated afresh (it may succeed once capacity frees up).
"""

from __future__ import annotations

import hashlib
import json
import re

from api_shim.errors import ApiError, ErrorType, invalid_request
from api_shim.schemas import CreateSessionRequest
from avatar_crds.session import AvatarSession

HEADER = "Idempotency-Key"
LABEL_KEY_HASH = "facecast.io/idempotency-key-hash"
ANNOTATION_FINGERPRINT = "facecast.io/idempotency-fingerprint"
MAX_KEY_LENGTH = 255
# Printable ASCII, 1-255 characters, no space at either end (HTTP would strip it). The OpenAPI
# document publishes this same pattern, so what it calls valid is exactly what is accepted.
KEY_PATTERN = rf"^[\x21-\x7E](?:[\x20-\x7E]{{0,{MAX_KEY_LENGTH - 2}}}[\x21-\x7E])?$"
_KEY = re.compile(KEY_PATTERN)
KEY_HASH_LENGTH = 40  # label values are at most 63 characters; 160 bits is plenty


def validate_key(key: str) -> str:
    if _KEY.fullmatch(key) is None:
        raise invalid_request(
            "invalid_idempotency_key",
            f"{HEADER} must be 1-{MAX_KEY_LENGTH} printable ASCII characters.",
            param=HEADER,
        )
    return key


def key_hash(tenant: str, key: str) -> str:
    """Scoped by tenant: two tenants may pick the same key without seeing each other's result."""
    return hashlib.sha256(f"{tenant}:{key}".encode()).hexdigest()[:KEY_HASH_LENGTH]


def fingerprint(request: CreateSessionRequest) -> str:
    """SHA-256 of the request as validated (defaults filled in, keys sorted), token included,
    so that a retry with a different token is not mistaken for a replay. The token carries
    enough entropy that its hash reveals nothing."""
    payload = request.model_dump(mode="json")
    payload["transport"]["worker_token"] = request.transport.worker_token.get_secret_value()
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def check_replay(existing: AvatarSession, expected_fingerprint: str) -> None:
    """The same key with a different body is a client bug: say so instead of guessing."""
    if existing.metadata.annotations.get(ANNOTATION_FINGERPRINT) != expected_fingerprint:
        raise ApiError(
            ErrorType.CONFLICT,
            "idempotency_key_reused",
            f"This {HEADER} was already used with a different request body.",
            param=HEADER,
        )
