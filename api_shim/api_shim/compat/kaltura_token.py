"""Kaltura's session token, pure: the JWT that Kaltura's create answers and that authorises the
session's later calls (`Authorization: Bearer <token>`).

It is an HS256 JWT that Facecast signs and verifies itself: it names one session, the tenant and
the API key that created it, and expires with the session's longest possible life. Nothing is
stored: any API replica verifies it with the same key. The key is never the API key (which the
token must not reveal or stand in for) and is held for this purpose only: `SessionTokens.of`
derives it from an installation secret with a label, so the secret itself signs nothing.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
from dataclasses import dataclass, field
from typing import Any

ALGORITHM = "HS256"
ISSUER = "facecast"
AUDIENCE = "facecast/compat/kaltura"
# Domain separation: the same installation secret may key other things; this label makes the
# key that signs session tokens one of its own.
_KEY_LABEL = b"facecast kaltura session token v1"
_HEADER = {"alg": ALGORITHM, "typ": "JWT"}


class SessionTokenError(ValueError):
    """Not a session token Facecast signed (malformed, another key, another audience)."""


class SessionTokenExpiredError(SessionTokenError):
    """A genuine session token whose time is up."""


@dataclass(frozen=True)
class SessionClaims:
    session_id: str  # the public `sess_...` id
    tenant: str
    key_id: str  # the API key that created the session: revoking it ends its tokens too
    expires_at: int  # Unix seconds


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (ValueError, binascii.Error):
        raise SessionTokenError("not base64url") from None


def _json_part(text: str) -> dict[str, Any]:
    try:
        value = json.loads(_unb64(text))
    except ValueError:
        raise SessionTokenError("not JSON") from None
    if not isinstance(value, dict):
        raise SessionTokenError("not a JSON object")
    return value


@dataclass(frozen=True)
class SessionTokens:
    key: bytes = field(repr=False)

    @classmethod
    def of(cls, secret: str) -> SessionTokens:
        """The signer keyed from an installation secret (never used as the key itself)."""
        if not secret:
            raise ValueError("a session token key needs a secret")
        return cls(hmac.new(secret.encode(), _KEY_LABEL, hashlib.sha256).digest())

    def _sign(self, signing_input: str) -> str:
        return _b64(hmac.new(self.key, signing_input.encode("ascii"), hashlib.sha256).digest())

    def mint(self, claims: SessionClaims, *, now: int) -> str:
        payload = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": claims.session_id,
            "tenant": claims.tenant,
            "key": claims.key_id,
            "iat": now,
            "exp": claims.expires_at,
        }
        signing_input = ".".join(
            _b64(json.dumps(part, separators=(",", ":")).encode()) for part in (_HEADER, payload)
        )
        return f"{signing_input}.{self._sign(signing_input)}"

    def verify(self, token: str, *, now: int) -> SessionClaims:
        """The claims of a token this key signed for this audience, unexpired. The signature is
        checked before anything the token says is believed (its `alg` included: only HS256)."""
        parts = token.split(".")
        if len(parts) != 3:
            raise SessionTokenError("not a JWT")
        header_part, payload_part, signature = parts
        if not hmac.compare_digest(signature, self._sign(f"{header_part}.{payload_part}")):
            raise SessionTokenError("bad signature")
        if _json_part(header_part).get("alg") != ALGORITHM:
            raise SessionTokenError("not HS256")
        payload = _json_part(payload_part)
        session_id, tenant, key_id = payload.get("sub"), payload.get("tenant"), payload.get("key")
        expires_at = payload.get("exp")
        if (
            payload.get("iss") != ISSUER
            or payload.get("aud") != AUDIENCE
            or not isinstance(session_id, str)
            or not isinstance(tenant, str)
            or not isinstance(key_id, str)
            or not isinstance(expires_at, int)
            or isinstance(expires_at, bool)
        ):
            raise SessionTokenError("not a Kaltura session token")
        if now >= expires_at:
            raise SessionTokenExpiredError("expired")
        return SessionClaims(
            session_id=session_id, tenant=tenant, key_id=key_id, expires_at=expires_at
        )
