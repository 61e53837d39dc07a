"""speak.started / speak.finished from the worker's speech reports: once each, in the machine's
status (so a restart queues nothing twice), with the task as it was, bounded."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from avatar_crds.enums import Phase, WebhookEvent
from avatar_crds.session import (
    PENDING_WEBHOOKS_MAX,
    AnnouncedSpeech,
    AvatarSession,
    AvatarSessionStatus,
)
from avatar_crds.speech import SPEECH_TASKS_MAX, SpeakTaskReport, SpeechState
from avatar_operator.machine import Decision, Facts, step
from avatar_operator.speech_events import announce
from avatar_operator.webhooks import event_id, payload
from testbed.objects import LIMITS, SPEC, T0, session_manifest
from testbed.objects import worker_pod_facts as pod

TASK_A = "spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
TASK_B = "spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2B4"
STARTED_AT = T0 + timedelta(seconds=1)
FINISHED_AT = T0 + timedelta(seconds=3)


def report(task: str, state: SpeechState, **fields: Any) -> SpeakTaskReport:
    return SpeakTaskReport(id=task, state=state, **fields)


SPEAKING_A = report(TASK_A, SpeechState.SPEAKING, started_at=STARTED_AT)
DONE_A = report(TASK_A, SpeechState.DONE, started_at=STARTED_AT, finished_at=FINISHED_AT)


def running(reports: list[SpeakTaskReport], **status: Any) -> AvatarSessionStatus:
    worker = {
        "heartbeatAt": T0,
        "firstFrameAt": T0,
        "speech": [r.to_k8s() for r in reports],
    }
    body = {
        "phase": "running",
        "runningAt": T0,
        "deadlines": {"maxDurationAt": T0 + timedelta(seconds=600)},
        "worker": worker,
        **status,
    }
    return AvatarSessionStatus.model_validate(body)


def step_running(
    status: AvatarSessionStatus, phase: Phase = Phase.RUNNING, **facts: Any
) -> Decision:
    changes = {"webhooks_enabled": True, **facts}
    return step(phase, Facts(spec=SPEC, status=status, limits=LIMITS, pod=pod(), **changes), T0)


def speak_events(decision: Decision) -> list[tuple[WebhookEvent, str, SpeechState]]:
    return [
        (p.event, p.task, p.speak.state)
        for p in decision.status.pending_webhooks
        if p.speak is not None
    ]


# --- the pure rule -------------------------------------------------------------------------


def test_a_first_speaking_report_announces_started_and_a_finished_one_finished() -> None:
    first = announce([SPEAKING_A], [])
    assert first.events == [(WebhookEvent.SPEAK_STARTED, SPEAKING_A)]
    assert first.announced == [AnnouncedSpeech(id=TASK_A)]
    again = announce([SPEAKING_A], first.announced)
    assert again.events == []
    assert again.announced == first.announced
    finished = announce([DONE_A], first.announced)
    assert finished.events == [(WebhookEvent.SPEAK_FINISHED, DONE_A)]
    assert finished.announced == [AnnouncedSpeech(id=TASK_A, finished=True)]
    assert announce([DONE_A], finished.announced).events == []


def test_a_task_that_spoke_between_two_looks_is_announced_started_then_finished() -> None:
    decided = announce([DONE_A], [])
    assert [event for event, _ in decided.events] == [
        WebhookEvent.SPEAK_STARTED,
        WebhookEvent.SPEAK_FINISHED,
    ]
    started, finished = (task for _, task in decided.events)
    # speak.started tells the task as it was when it started, not how it ended.
    assert started == SPEAKING_A
    assert finished == DONE_A


def test_a_task_cut_before_it_started_is_only_finished() -> None:
    cut = report(TASK_B, SpeechState.INTERRUPTED, finished_at=FINISHED_AT)
    decided = announce([cut], [])
    assert decided.events == [(WebhookEvent.SPEAK_FINISHED, cut)]
    failed = report(TASK_B, SpeechState.FAILED, message="tts_unavailable")
    assert announce([failed], []).events == [(WebhookEvent.SPEAK_FINISHED, failed)]


def test_the_record_follows_the_worker_report_and_drops_tasks_it_no_longer_lists() -> None:
    record = [AnnouncedSpeech(id=TASK_A, finished=True), AnnouncedSpeech(id=TASK_B)]
    speaking_b = report(TASK_B, SpeechState.SPEAKING, started_at=STARTED_AT)
    decided = announce([speaking_b], record)
    assert decided.events == []
    assert decided.announced == [AnnouncedSpeech(id=TASK_B)]
    assert announce([], record).announced == []


def test_a_queued_report_is_ignored() -> None:
    assert announce([report(TASK_A, SpeechState.QUEUED)], []) == announce([], [])


# --- in the machine ------------------------------------------------------------------------


def test_a_running_session_queues_each_speak_webhook_once_across_steps() -> None:
    first = step_running(running([SPEAKING_A]))
    assert speak_events(first) == [(WebhookEvent.SPEAK_STARTED, TASK_A, SpeechState.SPEAKING)]
    assert first.status.announced_speech == [AnnouncedSpeech(id=TASK_A)]
    # The same facts again (a resync, or a restarted operator reading the status back).
    same = step_running(AvatarSessionStatus.model_validate(first.status.to_k8s()))
    assert same.status == AvatarSessionStatus.model_validate(first.status.to_k8s())
    # Delivered and written out, then the worker reports the task done.
    done = frozenset({(WebhookEvent.SPEAK_STARTED, TASK_A, "")})
    later = first.status.model_copy(update={"worker": running([DONE_A]).worker})
    finished = step_running(later, webhooks_done=done)
    assert speak_events(finished) == [(WebhookEvent.SPEAK_FINISHED, TASK_A, SpeechState.DONE)]
    assert finished.status.announced_speech == [AnnouncedSpeech(id=TASK_A, finished=True)]


def test_speech_is_recorded_without_an_endpoint_and_queues_nothing() -> None:
    decision = step_running(running([SPEAKING_A]), webhooks_enabled=False)
    assert decision.status.pending_webhooks == []
    assert decision.status.announced_speech == [AnnouncedSpeech(id=TASK_A)]


def test_an_ending_session_still_announces_the_task_the_worker_cut() -> None:
    cut = report(TASK_A, SpeechState.INTERRUPTED, started_at=STARTED_AT, finished_at=FINISHED_AT)
    status = running([cut], phase="ending", reason="user_ended", endingAt=T0,
                     announcedSpeech=[{"id": TASK_A}])  # fmt: skip
    decision = step_running(status, phase=Phase.ENDING)
    assert speak_events(decision) == [
        (WebhookEvent.SPEAK_FINISHED, TASK_A, SpeechState.INTERRUPTED)
    ]


def test_speak_webhooks_never_outgrow_the_status_limit() -> None:
    def many(start: int) -> list[SpeakTaskReport]:
        return [
            report(f"spk_01JCZ3V7M4Q8R2T6W9X0Y1{start + i:04d}", SpeechState.DONE, started_at=T0)
            for i in range(SPEECH_TASKS_MAX)
        ]

    first = step_running(running(many(0)))
    assert len(first.status.pending_webhooks) == 2 * SPEECH_TASKS_MAX
    # The endpoint is down; the worker has dropped those tasks and spoken 32 more.
    later = first.status.model_copy(update={"worker": running(many(100)).worker})
    second = step_running(later)
    assert len(second.status.pending_webhooks) == PENDING_WEBHOOKS_MAX
    newest = {p.task for p in second.status.pending_webhooks[-2 * SPEECH_TASKS_MAX :]}
    assert newest == {r.id for r in many(100)}  # the oldest ones were let go


# --- the payload ---------------------------------------------------------------------------


def test_a_speak_payload_carries_the_task_and_an_id_of_its_own() -> None:
    session = AvatarSession.model_validate(session_manifest(spec={"metadata": {"order": 7}}))
    decision = step_running(running([DONE_A]))
    started, finished = decision.status.pending_webhooks
    body = payload(finished, session)
    assert body["type"] == "speak.finished"
    assert body["data"]["speak"] == {
        "id": TASK_A,
        "state": "done",
        "started_at": STARTED_AT.isoformat().replace("+00:00", "Z"),
        "finished_at": FINISHED_AT.isoformat().replace("+00:00", "Z"),
        "message": None,
    }
    assert body["data"]["status"] == "running"
    assert body["data"]["metadata"] == {"order": 7}
    assert payload(started, session)["data"]["speak"]["state"] == "speaking"
    other = finished.model_copy(update={"task": TASK_B})
    ids = {event_id("s", started), event_id("s", finished), event_id("s", other)}
    assert len(ids) == 3  # receivers drop repeats by id: distinct events need distinct ids
