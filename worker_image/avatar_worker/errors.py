"""The failures the worker reports in `status.worker.failure` before it exits."""

from __future__ import annotations

from avatar_crds.enums import FailureReason
from avatar_crds.messages import fit_message


class WorkerError(Exception):
    """A reason from the closed FailureReason vocabulary and a message safe to show a customer
    (never a token, never a stack trace)."""

    def __init__(self, reason: FailureReason, message: str) -> None:
        super().__init__(f"{reason.value}: {message}")
        self.reason = reason
        self.message = fit_message(message)
