"""Kaltura's session token and error shape, pure: a token verifies only with the key that
signed it, for the session it names, until it expires; a tampered or re-signed one (another
key, `alg: none`) is refused; Kaltura's three documented errors get the page's messages."""

from __future__ import annotations

import base64
import json

import pytest

from api_shim.compat.kaltura_token import (
    SessionClaims,
    SessionTokenError,
    SessionTokenExpiredError,
    SessionTokens,
)
from api_shim.compat.kaltura_translate import translate_error
from api_shim.errors import ErrorDetail, ErrorType

NOW = 1_800_000_000
CLAIMS = SessionClaims(
    session_id="sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3", tenant="acme", key_id="key_1", expires_at=NOW + 60
)
TOKENS = SessionTokens.of("installation-secret")


def test_a_token_verifies_until_it_expires() -> None:
    token = TOKENS.mint(CLAIMS, now=NOW)
    assert TOKENS.verify(token, now=NOW + 59) == CLAIMS
    with pytest.raises(SessionTokenExpiredError):
        TOKENS.verify(token, now=NOW + 60)


def test_the_key_is_not_the_secret_itself() -> None:
    assert TOKENS.key != b"installation-secret"
    assert "installation-secret" not in repr(TOKENS)


@pytest.mark.parametrize(
    "forge",
    [
        lambda token: SessionTokens.of("another-secret").mint(CLAIMS, now=NOW),
        lambda token: token[:-2] + ("AA" if not token.endswith("AA") else "BB"),
        lambda token: "not-a-jwt",
        lambda token: token.rsplit(".", 1)[0] + ".",
    ],
    ids=["other-key", "bad-signature", "garbage", "no-signature"],
)
def test_forged_tokens_are_refused(forge: object) -> None:
    token = TOKENS.mint(CLAIMS, now=NOW)
    with pytest.raises(SessionTokenError):
        TOKENS.verify(forge(token), now=NOW)  # type: ignore[operator]


def test_changed_claims_break_the_signature() -> None:
    header, payload, signature = TOKENS.mint(CLAIMS, now=NOW).split(".")
    claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
    claims["sub"] = "sess_01JCZ3V7M4Q8R2T6W9X0Y1Z2B4"
    forged = base64.urlsafe_b64encode(json.dumps(claims).encode()).rstrip(b"=").decode()
    with pytest.raises(SessionTokenError):
        TOKENS.verify(f"{header}.{forged}.{signature}", now=NOW)


@pytest.mark.parametrize(
    ("status", "code", "message", "expected"),
    [
        (401, "invalid_api_key", "The API key is not valid.", "Invalid Kaltura Session"),
        (403, "quality_not_allowed", "No.", "Kaltura Session not authorized: No."),
        (500, "internal_error", "trace id 1", "Internal server error"),
        (401, "session_token_expired", "The session token has expired.", None),
        (404, "avatar_not_found", "No avatar av_x (avatar_id).", None),
    ],
)
def test_errors_in_kalturas_shape(
    status: int, code: str, message: str, expected: str | None
) -> None:
    detail = ErrorDetail(
        type=ErrorType.INVALID_REQUEST, code=code, message=message, request_id="req_1"
    )
    translated = translate_error(status, detail)
    assert translated.status == status
    wanted = expected or message.replace("avatar_id", "visualConfig.avatarId")
    assert translated.body == {"success": False, "error": wanted}
