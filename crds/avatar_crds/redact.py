"""Secrets out of free text: the one redaction every component runs over what it logs or reports.

Text that nobody controls ends up where secrets must never be: a worker's log tail becomes its
termination message and from there the session's status, an Event and the customer's
`failure.message`; an exception quotes the token it was given; a library logs a header. Nothing
secret is written on purpose, so this is the safety net, and it errs towards redacting: a
redacted word costs a little debugging, a leaked token costs a tenant's room.

Recognised: JWTs (LiveKit access tokens), Facecast API keys, `Bearer` credentials, values of
fields named like secrets (`token=`, `"api_key": "..."`, `Authorization: Basic ...`), passwords
in URLs, PEM blocks, and any exact value the caller knows to be secret.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping
from typing import Any, Final

REDACTED: Final = "[redacted]"

API_KEY_SECRET_PREFIX: Final = "fc_"
"""Every Facecast API key starts so (`fc_` + 43 url-safe characters, see api_shim.auth)."""

# A field is named like a secret when its name ends so: `worker_token`, `x-api-key`.
_SECRET_WORD = (
    r"(?:token|secret|password|passwd|api[_-]?key|authorization|auth|credentials?|private[_-]?key)"
)
_SECRET_FIELD = re.compile(rf"[\w.-]*{_SECRET_WORD}", re.IGNORECASE)
_BARE_VALUE = r"""(?!\[redacted\])[^\s"',;&}\])]+"""
# In text, only the last word of the name is matched (what precedes it stays as it is): a
# pattern for the whole name would be tried from every position of a long run of words.
_NAMED_VALUE = re.compile(
    rf"""(?P<name>{_SECRET_WORD})(?P<sep>["']?[ \t]*[:=][ \t]*)"""
    rf"""(?P<value>(?:bearer|basic)\s+{_BARE_VALUE}|"[^"\n]*"|'[^'\n]*'|{_BARE_VALUE})""",
    re.IGNORECASE,
)
_BEARER = re.compile(r"\b(?P<scheme>bearer)\s+[A-Za-z0-9._~+/=-]{8,}", re.IGNORECASE)
# A token cut short by a log tail's or a message's limit is still a secret: a header alone,
# or header and payload without the signature, are redacted too.
_JWT = re.compile(
    r"eyJ[A-Za-z0-9_-]{2,}\.[A-Za-z0-9_-]{2,}(?:\.[A-Za-z0-9_-]*)*|eyJ[A-Za-z0-9_-]{16,}"
)
_API_KEY = re.compile(rf"{API_KEY_SECRET_PREFIX}[A-Za-z0-9_-]{{16,}}")
_URL_PASSWORD = re.compile(r"(?P<scheme>://)[^/\s:@]+:[^/\s@]+@")
# A whole block, one whose end a tail cut off, or one whose beginning it cut off.
_PEM = re.compile(
    r"-----BEGIN [A-Z0-9 ]{1,40}-----.*?(?:-----END [A-Z0-9 ]{1,40}-----|\Z)"
    r"|\A[A-Za-z0-9+/=\s]*?-----END [A-Z0-9 ]{1,40}-----",
    re.DOTALL,
)


def redact(text: str, known: Collection[str] = ()) -> str:
    """`text` with every secret it appears to hold, and every string in `known`, replaced by
    REDACTED. Idempotent: redacting twice changes nothing more."""
    for secret in sorted(known, key=len, reverse=True):  # a secret may contain a shorter one
        if secret:
            text = text.replace(secret, REDACTED)
    text = _PEM.sub(REDACTED, text)
    text = _NAMED_VALUE.sub(_redact_named_value, text)
    text = _BEARER.sub(lambda match: f"{match['scheme']} {REDACTED}", text)
    text = _JWT.sub(REDACTED, text)
    text = _API_KEY.sub(REDACTED, text)
    return _URL_PASSWORD.sub(lambda match: f"{match['scheme']}{REDACTED}@", text)


def _redact_named_value(match: re.Match[str]) -> str:
    value = match["value"]
    quote = value[0] if value[0] in "\"'" else ""
    return f"{match['name']}{match['sep']}{quote}{REDACTED}{quote}"


def is_secret_field(name: str) -> bool:
    """A field named like a secret (`token`, `worker_token`, `x-api-key`, `password`, ...)."""
    return _SECRET_FIELD.fullmatch(name) is not None


def redact_value(value: Any, known: Collection[str] = ()) -> Any:
    """`value` made safe to render: strings redacted, mappings and sequences redacted all the
    way down, the value of every field named like a secret replaced whole, and any other
    object replaced by its redacted repr (which is what a JSON log renderer would print)."""
    if isinstance(value, str):
        return redact(value, known)
    if value is None or isinstance(value, bool | int | float):
        return value
    if isinstance(value, Mapping):
        return redact_mapping(value, known)
    if isinstance(value, list | tuple | set | frozenset):
        return [redact_value(item, known) for item in value]
    return redact(repr(value), known)


def redact_mapping(mapping: Mapping[Any, Any], known: Collection[str] = ()) -> dict[str, Any]:
    """A copy of `mapping` (a log event, a nested field) with `redact_value` applied to it."""
    redacted: dict[str, Any] = {}
    for key, value in mapping.items():
        name = str(key)
        if is_secret_field(name) and not (value is None or isinstance(value, bool)):
            redacted[name] = REDACTED
        else:
            redacted[name] = redact_value(value, known)
    return redacted
