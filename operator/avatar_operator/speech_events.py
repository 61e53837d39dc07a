"""Which speak webhooks a session's worker reports call for, each exactly once.

The worker reports every speak task in `status.worker.speech` (speaking, then done,
interrupted or failed). Its first report of a task that has started becomes `speak.started`,
its finished report `speak.finished`. What has been decided on is recorded in
`status.announcedSpeech`, written with the pending webhooks themselves, so a report seen again
(a resync, an operator restart) queues nothing twice. An entry lives as long as the worker
reports its task; the worker keeps at most SPEECH_TASKS_MAX, so the record stays as small.

A task cut before it started (an interrupt covering a queued task) gets only `speak.finished`,
once the worker reports it `interrupted`; the API's own view of it (`task_state` with
`speechClearedThrough`) fires nothing by itself. Pure: no I/O.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from avatar_crds.enums import WebhookEvent
from avatar_crds.session import AnnouncedSpeech
from avatar_crds.speech import SpeakTaskReport, SpeechState


@dataclass(frozen=True)
class SpeechAnnouncements:
    announced: list[AnnouncedSpeech]
    """The record to keep: one entry per reported task that has started or finished."""
    events: list[tuple[WebhookEvent, SpeakTaskReport]]
    """Webhooks to queue, each with the task as it was when it happened, in report order."""


def announce(
    reports: Sequence[SpeakTaskReport], announced: Sequence[AnnouncedSpeech]
) -> SpeechAnnouncements:
    before = {entry.id: entry for entry in announced}
    kept: list[AnnouncedSpeech] = []
    events: list[tuple[WebhookEvent, SpeakTaskReport]] = []
    for report in reports:
        seen = before.get(report.id)
        started = report.state is SpeechState.SPEAKING or report.started_at is not None
        finished = report.state.is_finished
        if not (started or finished):
            continue  # `queued` is never written; nothing to say of it
        if seen is None and started:
            # A task that spoke and finished between two looks still started first.
            events.append((WebhookEvent.SPEAK_STARTED, _as_started(report)))
        if finished and not (seen is not None and seen.finished):
            events.append((WebhookEvent.SPEAK_FINISHED, report))
        kept.append(AnnouncedSpeech(id=report.id, finished=finished))
    return SpeechAnnouncements(announced=kept, events=events)


def _as_started(report: SpeakTaskReport) -> SpeakTaskReport:
    if report.state is SpeechState.SPEAKING:
        return report
    return report.model_copy(
        update={"state": SpeechState.SPEAKING, "finished_at": None, "message": None}
    )
