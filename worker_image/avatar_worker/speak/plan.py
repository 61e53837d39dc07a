"""What to speak next, with which voice, what an interrupt covers, and the reports kept (pure).

The worker's reports (`status.worker.speech`) are the record of what is finished: a task with no
finished report is still to be spoken (`avatar_crds.speech.unfinished`). So a report is never
dropped while its task is still in `spec.speech`, or the task would be spoken again.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime

from avatar_crds.speech import (
    SPEECH_MESSAGE_MAX_LENGTH,
    SPEECH_TASKS_MAX,
    SpeakTask,
    SpeakTaskReport,
    SpeechState,
    Voice,
    unfinished,
)
from avatar_crds.voices import DEFAULT_VOICE_ID, CatalogueVoice, VoiceCatalogue, VoiceRefusal


@dataclass(frozen=True)
class ResolvedVoice:
    voice: CatalogueVoice
    speed: float


def resolve_voice(
    task: SpeakTask, session_voice: Voice | None, voices: VoiceCatalogue
) -> ResolvedVoice | VoiceRefusal:
    """The task's voice, else the session's, else the catalogue's default. The API checked it
    against its own catalogue; this one may differ (a voice removed from the chart since)."""
    chosen = task.voice or session_voice
    voice_id = chosen.id if chosen is not None else DEFAULT_VOICE_ID
    speed = chosen.speed if chosen is not None else 1.0
    refusal = voices.check(voice_id, speed)
    if refusal is not None:
        return refusal
    found = voices.find(voice_id)
    assert found is not None  # check() refuses unknown ids
    return ResolvedVoice(found, speed)


def next_task(
    tasks: Sequence[SpeakTask], reports: Iterable[SpeakTaskReport], cleared_through: int
) -> SpeakTask | None:
    """The lowest-seq task not finished and not covered by an interrupt."""
    remaining = unfinished(tasks, reports, cleared_through)
    return remaining[0] if remaining else None


def covered_never_started(
    tasks: Sequence[SpeakTask],
    reports: Iterable[SpeakTaskReport],
    cleared_through: int,
    current: str | None,
) -> list[SpeakTask]:
    """Tasks an interrupt covers that have no report yet (and are not the one being spoken):
    they are reported interrupted without ever being spoken."""
    reported = {report.id for report in reports}
    return sorted(
        (t for t in tasks if t.seq <= cleared_through and t.id not in reported and t.id != current),
        key=lambda t: t.seq,
    )


def message(text: str) -> str:
    """A report's message, clipped to the CRD's limit."""
    if len(text) <= SPEECH_MESSAGE_MAX_LENGTH:
        return text
    return text[: SPEECH_MESSAGE_MAX_LENGTH - 1] + "…"


class SpeechLedger:
    """The worker's reports, at most SPEECH_TASKS_MAX, in the order the tasks were first seen."""

    def __init__(self, reports: Iterable[SpeakTaskReport] = ()) -> None:
        self._reports: dict[str, SpeakTaskReport] = {report.id: report for report in reports}

    def reports(self) -> list[SpeakTaskReport]:
        return list(self._reports.values())

    def started(self, task_id: str, at: datetime, in_spec: Collection[str]) -> None:
        self._put(SpeakTaskReport(id=task_id, state=SpeechState.SPEAKING, started_at=at), in_spec)

    def finished(
        self,
        task_id: str,
        state: SpeechState,
        at: datetime,
        in_spec: Collection[str],
        why: str | None = None,
    ) -> None:
        assert state.is_finished
        before = self._reports.get(task_id)
        report = SpeakTaskReport(
            id=task_id,
            state=state,
            started_at=before.started_at if before is not None else None,
            finished_at=at,
            message=message(why) if why else None,
        )
        self._put(report, in_spec)

    def _put(self, report: SpeakTaskReport, in_spec: Collection[str]) -> None:
        self._reports[report.id] = report
        self._reports = {r.id: r for r in trimmed(list(self._reports.values()), in_spec)}


def trimmed(reports: Sequence[SpeakTaskReport], in_spec: Collection[str]) -> list[SpeakTaskReport]:
    """At most SPEECH_TASKS_MAX reports: finished ones whose task the API has dropped go first,
    then the oldest finished ones; an unfinished report is never dropped."""
    excess = len(reports) - SPEECH_TASKS_MAX
    if excess <= 0:
        return list(reports)
    finished = [r for r in reports if r.state.is_finished]
    gone = [r for r in finished if r.id not in in_spec]
    still_listed = [r for r in finished if r.id in in_spec]
    drop = {r.id for r in (gone + still_listed)[:excess]}
    return [r for r in reports if r.id not in drop]
