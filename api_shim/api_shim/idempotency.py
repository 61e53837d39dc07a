"""Idempotency-Key for POST /v1/sessions, arbitrated by the API server so that it holds across
API replicas and restarts, with no other store.

A key is claimed by creating a `coordination.k8s.io` Lease whose name is derived from the
(tenant, key) hash: of any number of replicas creating it at once, the API server lets exactly
one succeed and answers the others 409 AlreadyExists. The Lease names the session its holder
is making (`spec.holderIdentity`, chosen before the claim, so the public id is an ordinary
`sess_<ULID>`) and carries a fingerprint of the request. Once the session and its Secret exist,
the holder makes the session the Lease's owner ("commits"): the others then answer with that
session, and the garbage collector deletes the Lease with the session, freeing the key. The
session itself carries the key hash as a label and the fingerprint as an annotation too.

Only successful creations are remembered: a request refused with an error created nothing and
deletes its claim, so repeating it with the same key is evaluated afresh (it may succeed once
capacity frees up). A claim whose holder died mid-create is taken over once its lease has run
out; each step is conditional on the Lease's resourceVersion, so a slow holder that lost its
claim finds out and undoes its session rather than making a second one.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from api_shim.errors import ApiError, ErrorType, invalid_request
from api_shim.sessions.schemas import CreateSessionRequest, ManagedTransportRequest
from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import owner_reference
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
CLAIM_PREFIX = "idem-"
COMPONENT_CLAIM = "idempotency-key"
# Longer than a create can take (an inline avatar's fetch of up to 10 s, then a few API server
# calls of up to 10 s each), so that only a holder that died is ever taken over.
CLAIM_SECONDS = 60


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
    transport = request.transport
    if not isinstance(transport, ManagedTransportRequest):  # a managed room's token is minted
        payload["transport"]["worker_token"] = transport.worker_token.get_secret_value()
    canonical = json.dumps(payload, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    return hashlib.sha256(canonical.encode()).hexdigest()


def claim_name(key_hash: str) -> str:
    return CLAIM_PREFIX + key_hash


@dataclass(frozen=True)
class Claim:
    """A Lease claiming one (tenant, key), as read from the API server."""

    name: str
    uid: str
    resource_version: str
    key_hash: str
    session_name: str  # the session its holder makes (or made)
    fingerprint: str
    committed: bool  # the session exists and owns the claim
    expires_at: datetime

    @classmethod
    def of(cls, raw: dict[str, Any]) -> Claim:
        metadata, spec = raw.get("metadata") or {}, raw.get("spec") or {}
        acquired = datetime.fromisoformat(str(spec.get("acquireTime")))
        return cls(
            name=str(metadata.get("name", "")),
            uid=str(metadata.get("uid", "")),
            resource_version=str(metadata.get("resourceVersion", "")),
            key_hash=str((metadata.get("labels") or {}).get(LABEL_KEY_HASH, "")),
            session_name=str(spec.get("holderIdentity", "")),
            fingerprint=str((metadata.get("annotations") or {}).get(ANNOTATION_FINGERPRINT, "")),
            committed=bool(metadata.get("ownerReferences")),
            expires_at=acquired + timedelta(seconds=int(spec.get("leaseDurationSeconds") or 0)),
        )

    def session_marks(self) -> tuple[dict[str, str], dict[str, str]]:
        """The label and the annotation that its session carries."""
        return {LABEL_KEY_HASH: self.key_hash}, {ANNOTATION_FINGERPRINT: self.fingerprint}

    def expired(self, now: datetime) -> bool:
        """Uncommitted past its lease: its holder died mid-create (clocks in a cluster agree
        to far better than CLAIM_SECONDS)."""
        return not self.committed and now >= self.expires_at


def claim_body(
    *,
    tenant: str,
    key_hash: str,
    session_name: str,
    fingerprint: str,
    namespace: str,
    now: datetime,
) -> dict[str, Any]:
    """The Lease that claims (tenant, key) for the session `session_name`."""
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {
            "name": claim_name(key_hash),
            "namespace": namespace,
            "labels": {
                contract.LABEL_TENANT: tenant,
                contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
                contract.LABEL_COMPONENT: COMPONENT_CLAIM,
                LABEL_KEY_HASH: key_hash,
            },
            "annotations": {ANNOTATION_FINGERPRINT: fingerprint},
        },
        "spec": {
            "holderIdentity": session_name,
            "acquireTime": now.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            "leaseDurationSeconds": CLAIM_SECONDS,
        },
    }


def commit_patch(claim: Claim, session: AvatarSession) -> dict[str, Any]:
    """Make the session the claim's owner, if the claim is still the one this holder made."""
    name = session.metadata.name or ""
    owner = owner_reference(AVATAR_SESSION.kind, name, session.metadata.uid, controller=False)
    return {"metadata": {"resourceVersion": claim.resource_version, "ownerReferences": [owner]}}


def check_replay(claim: Claim, expected_fingerprint: str) -> None:
    """The same key with a different body is a client bug: say so instead of guessing."""
    if claim.fingerprint != expected_fingerprint:
        raise ApiError(
            ErrorType.CONFLICT,
            "idempotency_key_reused",
            f"This {HEADER} was already used with a different request body.",
            param=HEADER,
        )
