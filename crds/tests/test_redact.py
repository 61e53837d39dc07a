"""The one redaction: every shape of secret it promises to find, in free text and nested values."""

from __future__ import annotations

from typing import Any

import pytest

from avatar_crds.redact import REDACTED, is_secret_field, redact, redact_mapping, redact_value

JWT = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiJ3b3JrZXIiLCJ2aWRlbyI6eyJyb29tIjoiciJ9fQ"
    ".c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)
API_KEY = "fc_" + "Ab3-_x" * 7 + "Z"  # the shape api_shim.auth mints: fc_ + 43 url-safe chars
PEM_BODY = "MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7"


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        (f"401 Unauthorized - invalid token {JWT}", JWT),
        (f"a LiveKit token cut short by a log tail: {JWT[:60]}", JWT[:60]),
        (f"only the header survived: {JWT.split('.')[0]}", JWT.split(".")[0]),
        (f"sent {API_KEY} by mistake", API_KEY),
        (f"x-api-key: {API_KEY[:30]}", API_KEY[:30]),
        ("GET / Authorization: Bearer s3cr3t-opaque-value", "s3cr3t-opaque-value"),
        ("retrying with bearer abcdefgh12345678", "abcdefgh12345678"),
        ("Authorization: Basic dXNlcjpwYXNzd29yZA==", "dXNlcjpwYXNzd29yZA=="),
        ("connect?access_token=opaque123&room=r", "opaque123"),
        ("api_key=k-123456 next=1", "k-123456"),
        ("LIVEKIT_API_SECRET = very-secret-value", "very-secret-value"),
        ('{"token": "with spaces inside", "room": "r"}', "with spaces inside"),
        ("{'password': 'hunter2'}", "hunter2"),
        ("worker_token:opaque-value", "opaque-value"),
        ("fetching https://admin:pa55word@registry.example/v2", "pa55word"),
        (f"-----BEGIN PRIVATE KEY-----\n{PEM_BODY}\n-----END PRIVATE KEY-----", PEM_BODY),
        (f"tail cut the end:\n-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}", PEM_BODY),
        (f"{PEM_BODY}\n-----END CERTIFICATE-----\nnext line", PEM_BODY),
    ],
)
def test_each_shape_of_secret_is_redacted(text: str, secret: str) -> None:
    redacted = redact(text)
    assert secret not in redacted
    assert REDACTED in redacted
    assert redact(redacted) == redacted  # idempotent


@pytest.mark.parametrize(
    "text",
    [
        "room r joined by facecast-worker",
        "node gpu-0.example.internal is gone",
        "wss://livekit.example.com:443/rtc",
        "tokenSecretRef={'name': 'sess-1-token', 'key': 'token'}",
        "max_tokens=5 token_count=3",
        "invalid authorization token",
        "0/3 nodes are available: 3 Insufficient nvidia.com/gpu.",
        "worker exited: Error (exit code 137)",
    ],
)
def test_ordinary_text_is_kept(text: str) -> None:
    assert redact(text) == text


def test_known_secrets_are_redacted_longest_first() -> None:
    text = "opaque-secret-value and opaque-secret"
    assert redact(text, known={"opaque-secret", "opaque-secret-value"}) == (
        f"{REDACTED} and {REDACTED}"
    )


def test_the_text_around_a_secret_is_kept() -> None:
    assert (
        redact(f"join failed: token={JWT}; giving up")
        == f"join failed: token={REDACTED}; giving up"
    )


def test_nested_values_are_redacted_all_the_way_down() -> None:
    class Carrier:
        def __repr__(self) -> str:
            return f"Carrier(token={JWT})"

    event: dict[str, Any] = {
        "event": f"failed with {API_KEY}",
        "token": "opaque",
        "request": {"headers": {"Authorization": "Basic abc"}, "args": [JWT, (API_KEY, 1)]},
        "error": ValueError(f"bad key {API_KEY}"),
        "carrier": Carrier(),
        "has_token": True,
        "api_key": None,
        "count": 3,
    }
    redacted = redact_mapping(event)
    assert redacted == {
        "event": f"failed with {REDACTED}",
        "token": REDACTED,
        "request": {"headers": {"Authorization": REDACTED}, "args": [REDACTED, [REDACTED, 1]]},
        "error": f"ValueError('bad key {REDACTED}')",
        "carrier": f"Carrier(token={REDACTED})",
        "has_token": True,
        "api_key": None,
        "count": 3,
    }
    assert event["token"] == "opaque"  # the caller's dict is left alone


def test_secret_field_names() -> None:
    for name in ("token", "worker_token", "x-api-key", "apiKey", "Authorization", "password"):
        assert is_secret_field(name), name
    for name in ("tokenSecretRef", "token_count", "event", "key_id", "session"):
        assert not is_secret_field(name), name
    assert redact_value(("a", f"token={JWT}")) == ["a", f"token={REDACTED}"]
