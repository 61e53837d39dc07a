"""Structured JSON logs, one event per line, with the request id (and tenant, session id) bound.

Nothing secret is ever passed to a logger on purpose; the shared redaction (avatar_crds.redact)
is the safety net. It runs last, on the whole event (nested values, exception text and
tracebacks included), so nothing added after it can bring a secret back.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any, TextIO

import structlog
from structlog.typing import EventDict, Processor, WrappedLogger

from avatar_crds.redact import redact_mapping

# Chatty at DEBUG (request and response bodies): never let them run below WARNING.
_QUIET_LIBRARIES = ("kubernetes", "urllib3")


def redact_secrets(
    _logger: WrappedLogger, _method: str, event: MutableMapping[str, Any]
) -> EventDict:
    return redact_mapping(event)


def _shared_processors() -> list[Processor]:
    return [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
    ]


def _rendering() -> list[Processor]:
    """Tracebacks become text first, so that the redaction sees them."""
    return [
        structlog.processors.format_exc_info,
        redact_secrets,
        structlog.processors.JSONRenderer(),
    ]


def configure_logging(level: str = "info", stream: TextIO | None = None) -> None:
    """Route structlog and the standard library (uvicorn, kubernetes) to one JSON stream."""
    out = stream or sys.stdout
    numeric = logging.getLevelNamesMapping()[level.upper()]
    structlog.configure(
        processors=[*_shared_processors(), *_rendering()],
        wrapper_class=structlog.make_filtering_bound_logger(numeric),
        logger_factory=structlog.WriteLoggerFactory(file=out),
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(out)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            foreign_pre_chain=_shared_processors(),
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, *_rendering()],
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(numeric)
    for name in _QUIET_LIBRARIES:
        logging.getLogger(name).setLevel(max(numeric, logging.WARNING))


def get_logger(name: str) -> Any:
    return structlog.get_logger(name)
