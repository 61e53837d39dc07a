"""What the avatar is asked to say over REST (#23), and how far it got.

The API appends a `SpeakTask` to the session's `spec.speech`; the worker, watching its own
session, speaks the tasks in `seq` order and reports each one in `status.worker.speech`. An
interrupt raises `spec.speechClearedThrough` to the last task's `seq`: every task at or below it
that has not finished is cut (or never starts). The text is the customer's own words, not a
secret, so it may live in the resource; the queue is bounded so a session stays small.

Pure: the models and the rules everyone applies the same way (a task's state, what is still to
be spoken, which finished tasks the API may drop when it appends).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import datetime
from enum import StrEnum
from typing import Annotated, Final

from pydantic import Field

from avatar_crds.ids import ULID_PATTERN
from avatar_crds.meta import CamelModel

SPEAK_TASK_PREFIX: Final = "spk"
SPEAK_TASK_ID_PATTERN: Final = rf"^{SPEAK_TASK_PREFIX}_{ULID_PATTERN}$"
SPEAK_TEXT_MAX_CHARS: Final = 4096
"""OpenAI's /v1/audio/speech limit: no task is too long for an OpenAI-compatible engine."""
SPEECH_UNFINISHED_MAX: Final = 16
"""Tasks queued or speaking at once; the API refuses another with 429 `speech_queue_full`."""
SPEECH_TASKS_MAX: Final = 32
"""Entries in `spec.speech` and `status.worker.speech`; finished ones are dropped oldest first."""
SPEECH_MESSAGE_MAX_LENGTH: Final = 256

VOICE_SPEED_MIN: Final = 0.5
VOICE_SPEED_MAX: Final = 2.0
"""Speech rate relative to the voice's normal one; a voice may offer less (avatar_crds.voices)."""


# One of the installation's voices (`avatar_crds.voices`), checked by the API at create and speak.
class Voice(CamelModel):
    id: Annotated[str, Field(min_length=1, max_length=64)]
    speed: Annotated[float, Field(ge=VOICE_SPEED_MIN, le=VOICE_SPEED_MAX)] = 1.0


class SpeakTask(CamelModel):
    """One text to say, as the API wrote it into `spec.speech`."""

    id: Annotated[str, Field(pattern=SPEAK_TASK_ID_PATTERN)]
    seq: Annotated[int, Field(ge=1)] = Field(
        description="Order of speaking: 1, 2, 3... per session; an interrupt names a seq."
    )
    text: Annotated[str, Field(min_length=1, max_length=SPEAK_TEXT_MAX_CHARS)]
    voice: Voice | None = Field(
        default=None, description="Overrides the session's voice for this task."
    )
    requested_at: datetime


class SpeechState(StrEnum):
    """Where a speak task is. `queued` is never written: it is a task with no report yet."""

    QUEUED = "queued"
    SPEAKING = "speaking"
    DONE = "done"
    INTERRUPTED = "interrupted"
    FAILED = "failed"

    @property
    def is_finished(self) -> bool:
        return self in (SpeechState.DONE, SpeechState.INTERRUPTED, SpeechState.FAILED)


class SpeakTaskReport(CamelModel):
    """The worker's account of one task, in `status.worker.speech`."""

    id: Annotated[str, Field(pattern=SPEAK_TASK_ID_PATTERN)]
    state: SpeechState
    started_at: datetime | None = None
    finished_at: datetime | None = None
    message: Annotated[str, Field(max_length=SPEECH_MESSAGE_MAX_LENGTH)] | None = Field(
        default=None, description="Why a task failed (the TTS engine's typed error)."
    )


def task_state(
    task_id: str, reports: Iterable[SpeakTaskReport], *, cleared_through: int = 0, seq: int = 0
) -> SpeechState:
    """A task's state: the worker's report if there is one; else interrupted when an interrupt
    covers it (it will never start), else queued."""
    for report in reports:
        if report.id == task_id:
            return report.state
    if seq and seq <= cleared_through:
        return SpeechState.INTERRUPTED
    return SpeechState.QUEUED


def unfinished(
    tasks: Sequence[SpeakTask], reports: Iterable[SpeakTaskReport], cleared_through: int
) -> list[SpeakTask]:
    """Tasks still to be spoken or being spoken, in seq order."""
    finished = {report.id for report in reports if report.state.is_finished}
    return sorted(
        (t for t in tasks if t.id not in finished and t.seq > cleared_through),
        key=lambda t: t.seq,
    )


def next_seq(tasks: Sequence[SpeakTask], cleared_through: int) -> int:
    """The seq of the next task: above every task and every interrupt, so none is ever reused."""
    return max([cleared_through, *(t.seq for t in tasks)]) + 1


def kept_after_append(
    tasks: Sequence[SpeakTask], reports: Iterable[SpeakTaskReport], cleared_through: int
) -> list[SpeakTask]:
    """The tasks to keep in `spec.speech` so that one more fits in SPEECH_TASKS_MAX: finished
    (or cleared) ones go first, oldest first; unfinished ones are never dropped."""
    ordered = sorted(tasks, key=lambda t: t.seq)
    open_ids = {t.id for t in unfinished(ordered, reports, cleared_through)}
    excess = len(ordered) + 1 - SPEECH_TASKS_MAX
    kept: list[SpeakTask] = []
    for task in ordered:
        if excess > 0 and task.id not in open_ids:
            excess -= 1
            continue
        kept.append(task)
    return kept
