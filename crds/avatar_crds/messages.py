"""Messages that reach a session's status, its Events and the customer's `failure.message`."""

from __future__ import annotations

from typing import Final

from avatar_crds.redact import redact
from avatar_crds.session import MESSAGE_MAX_LENGTH

_CUT: Final = " [...] "


def fit_message(text: str) -> str:
    """A message safe to write: secrets redacted, then clipped to the CRD's limit.

    A message comes from the worker's log tail (its termination message), the scheduler or the
    worker's own report, and the status, its Event and the customer's `failure.message` show
    it. A status longer than the limit is refused whole (422): the session could then never
    reach a terminal phase, be deleted, or stop being charged. Redacted before it is cut: a
    cut through a token could leave a piece that no pattern recognises. The middle goes: the
    beginning says what failed, the end of a log tail how the worker died.
    """
    text = redact(text)
    if len(text) <= MESSAGE_MAX_LENGTH:
        return text
    head = MESSAGE_MAX_LENGTH // 4
    tail = MESSAGE_MAX_LENGTH - head - len(_CUT)
    return f"{text[:head]}{_CUT}{text[-tail:]}"
