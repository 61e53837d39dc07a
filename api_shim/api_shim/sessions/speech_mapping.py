"""Speak and interrupt requests -> the session's `spec.speech` writes, and speak tasks -> their
public views. Pure: no I/O, no clock, no randomness (the service passes the time and the new
task's id in). The rules themselves (a task's state, what is unfinished, the next seq, what may
be dropped) are the contract's, `avatar_crds.speech`."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from api_shim.errors import ApiError, ErrorType
from api_shim.sessions.schemas import Voice
from api_shim.sessions.speech_schemas import InterruptResult, SpeakRequest, SpeakTaskView
from avatar_crds.ids import to_public_id
from avatar_crds.session import AvatarSession
from avatar_crds.speech import (
    SPEECH_UNFINISHED_MAX,
    SpeakTask,
    SpeakTaskReport,
    kept_after_append,
    next_seq,
    task_state,
    unfinished,
)
from avatar_crds.speech import Voice as SpecVoice


@dataclass(frozen=True)
class SpeakWrite:
    task: SpeakTask
    patch: dict[str, Any]


@dataclass(frozen=True)
class InterruptWrite:
    result: InterruptResult
    patch: dict[str, Any] | None  # None: nothing left to cut, nothing to write


def reports_of(session: AvatarSession) -> list[SpeakTaskReport]:
    worker = session.status.worker
    return [] if worker is None else worker.speech


def speak_write(
    session: AvatarSession,
    request: SpeakRequest,
    *,
    task_id: str,
    now: datetime,
    retry_after: int,
) -> SpeakWrite:
    """The new task and the conditional merge patch that appends it to `session` as read: its
    `spec.speech` with finished tasks dropped to make room, `keepAliveAt` (speech is activity)
    and, for `interrupt`, `speechClearedThrough` raised to the last task. 429
    `speech_queue_full` when SPEECH_UNFINISHED_MAX tasks are still to be said."""
    spec = session.spec
    reports = reports_of(session)
    cleared = spec.speech_cleared_through
    if request.interrupt:
        cleared = max([cleared, *(task.seq for task in spec.speech)])
    waiting = len(unfinished(spec.speech, reports, cleared))
    if waiting >= SPEECH_UNFINISHED_MAX:
        raise ApiError(
            ErrorType.RATE_LIMIT,
            "speech_queue_full",
            f"{waiting} speak tasks are still to be said, the most a session queues. Retry"
            " once one is done, or speak with `interrupt: true` to replace them.",
            retry_after=retry_after,
        )
    task = SpeakTask(
        id=task_id,
        # From every task as read, before any is dropped: a seq is never used twice.
        seq=next_seq(spec.speech, cleared),
        text=request.text,
        voice=None
        if request.voice is None
        else SpecVoice(id=request.voice.id, speed=request.voice.speed),
        requested_at=now,
    )
    kept = kept_after_append(spec.speech, reports, cleared)
    written = task.to_k8s()
    changes: dict[str, Any] = {
        # A merge patch replaces a list whole: the kept tasks and the new one.
        "speech": [*(kept_task.to_k8s() for kept_task in kept), written],
        "keepAliveAt": written["requestedAt"],
    }
    if cleared != spec.speech_cleared_through:
        changes["speechClearedThrough"] = cleared
    return SpeakWrite(task, _conditional(session, changes))


def interrupt_write(session: AvatarSession) -> InterruptWrite:
    """Raise `speechClearedThrough` to the last task's seq, cutting every unfinished task;
    with none unfinished there is nothing to write (repeating an interrupt changes nothing)."""
    spec = session.spec
    cut = unfinished(spec.speech, reports_of(session), spec.speech_cleared_through)
    result = InterruptResult(
        session_id=_session_id(session), interrupted_task_ids=[task.id for task in cut]
    )
    if not cut:
        return InterruptWrite(result, None)
    last = max(task.seq for task in spec.speech)
    return InterruptWrite(result, _conditional(session, {"speechClearedThrough": last}))


def find_task(session: AvatarSession, task_id: str) -> SpeakTask | None:
    return next((task for task in session.spec.speech if task.id == task_id), None)


def to_task_view(session: AvatarSession, task: SpeakTask) -> SpeakTaskView:
    reports = reports_of(session)
    report = next((r for r in reports if r.id == task.id), None)
    voice = task.voice or session.spec.voice
    return SpeakTaskView(
        id=task.id,
        session_id=_session_id(session),
        state=task_state(
            task.id, reports, cleared_through=session.spec.speech_cleared_through, seq=task.seq
        ),
        text=task.text,
        voice=None if voice is None else Voice(id=voice.id, speed=voice.speed),
        created_at=task.requested_at,
        started_at=None if report is None else report.started_at,
        finished_at=None if report is None else report.finished_at,
        message=None if report is None else report.message,
    )


def _conditional(session: AvatarSession, spec_changes: dict[str, Any]) -> dict[str, Any]:
    """A merge patch the API server applies only to the version read (else a conflict): the
    list and the seq numbers were computed from it."""
    version = session.metadata.resource_version
    if version is None:
        raise ValueError("an AvatarSession from the API server always has a resourceVersion")
    return {"metadata": {"resourceVersion": version}, "spec": spec_changes}


def _session_id(session: AvatarSession) -> str:
    return to_public_id(session.metadata.name or "")
