"""Structured JSON logs, one event per line, with the request id (and tenant, session id) bound.

Nothing secret is ever passed to a logger on purpose; `redact_secrets` is the safety net for
fields named like secrets and for anything shaped like an API key.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

REDACTED = "[redacted]"
_SECRET_FIELDS = frozenset(
    {"token", "worker_token", "api_key", "x-api-key", "authorization", "key", "secret"}
)
_API_KEY_SHAPE = re.compile(r"fc_[A-Za-z0-9_-]{43}")
# Chatty at DEBUG (request and response bodies): never let them run below WARNING.
_QUIET_LIBRARIES = ("kubernetes", "urllib3")


def redact_secrets(_logger: WrappedLogger, _method: str, event: EventDict) -> EventDict:
    return _redact(event)


def _redact(mapping: MutableMapping[str, Any]) -> EventDict:
    for name, value in list(mapping.items()):
        if name.lower() in _SECRET_FIELDS:
            mapping[name] = REDACTED
        elif isinstance(value, str):
            mapping[name] = _API_KEY_SHAPE.sub(REDACTED, value)
    return dict(mapping)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library (uvicorn, kubernetes) to one JSON stream."""
    out = stream or sys.stdout
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[
            *_shared_processors(),
            structlog.processors.format_exc_info,
            structlog.processors.JSONRenderer(),
        ],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[
                structlog.stdlib.ProcessorFormatter.remove_processors_meta,
                structlog.processors.format_exc_info,
                structlog.processors.JSONRenderer(),
            ],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
