"""structlog JSON logs, one event per line, bound to the session, with every token redacted.

The LiveKit SDK forwards its native logs through the stdlib `livekit` logger, and some of them
quote the access token verbatim (a rejected join logs "invalid token: eyJ..."). Every record,
ours or the SDK's, passes the shared redaction (avatar_crds.redact) last, on the whole event
with its exception text: anything shaped like a secret, and every secret registered with
`add_secret`, becomes "[redacted]". What the worker reports (its failure message, which the
operator shows the customer) passes `redact` too.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog

from avatar_crds import redact as redaction

REDACTED = redaction.REDACTED
_secrets: set[str] = set()


def add_secret(value: str) -> None:
    """Never log this exact string (the token read from the mounted file)."""
    if len(value) >= 8:
        _secrets.add(value)


def redact(text: str) -> str:
    return redaction.redact(text, _secrets)


def redact_processor(
    _logger: Any, _method: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    return redaction.redact_mapping(event_dict, _secrets)


def _shared_processors() -> list[Any]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.stdlib.add_log_level,
        structlog.stdlib.add_logger_name,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
    ]


def configure(level: str = "INFO", stream: TextIO | None = None) -> None:
    """JSON lines on `stream` (stderr by default) for structlog and stdlib loggers alike."""
    stream = stream or sys.stderr
    formatter = structlog.stdlib.ProcessorFormatter(
        foreign_pre_chain=_shared_processors(),
        processors=[
            structlog.stdlib.ProcessorFormatter.remove_processors_meta,
            redact_processor,
            structlog.processors.JSONRenderer(),
        ],
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(formatter)
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_facecast", False):
            root.removeHandler(existing)
    handler._facecast = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level.upper())
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )


def unconfigure() -> None:
    """Remove what `configure` installed (tests; a process configures once)."""
    root = logging.getLogger()
    for existing in list(root.handlers):
        if getattr(existing, "_facecast", False):
            root.removeHandler(existing)
    structlog.reset_defaults()
    structlog.contextvars.clear_contextvars()


def bind_session(namespace: str | None, name: str | None, **extra: Any) -> None:
    structlog.contextvars.bind_contextvars(session=name, namespace=namespace, **extra)


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
