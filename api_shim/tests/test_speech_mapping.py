"""Speak and interrupt -> the session's spec.speech writes, and speak tasks -> their views, with
no cluster: pure functions only."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from api_shim.errors import ApiError, ErrorType
from api_shim.sessions import speech_mapping
from api_shim.sessions.speech_schemas import SpeakRequest, SpeakTaskView
from avatar_crds.ids import new_public_id, to_public_id
from avatar_crds.session import AvatarSession
from avatar_crds.speech import SPEECH_TASKS_MAX, SPEECH_UNFINISHED_MAX, SpeakTask, SpeechState
from testbed.objects import SAMPLE_SESSION, session_manifest

T0 = datetime(2026, 11, 21, 8, 0, tzinfo=UTC)
SESSION_ID = to_public_id(SAMPLE_SESSION)


def _task(seq: int, text: str = "hello") -> dict[str, Any]:
    return {
        "id": new_public_id("spk"),
        "seq": seq,
        "text": f"{text} {seq}",
        "requestedAt": (T0 + timedelta(seconds=seq)).isoformat(),
    }


def _session(
    tasks: list[dict[str, Any]] | None = None,
    *,
    cleared: int = 0,
    reports: list[dict[str, Any]] | None = None,
    voice: dict[str, Any] | None = None,
) -> AvatarSession:
    spec: dict[str, Any] = {"speech": tasks or [], "speechClearedThrough": cleared}
    if voice is not None:
        spec["voice"] = voice
    body = session_manifest(spec=spec, status={"worker": {"speech": reports or []}})
    body["metadata"]["resourceVersion"] = "42"
    return AvatarSession.model_validate(body)


def _speak(session: AvatarSession, **request: Any) -> speech_mapping.SpeakWrite:
    return speech_mapping.speak_write(
        session,
        SpeakRequest.model_validate({"text": "hi", **request}),
        task_id=new_public_id("spk"),
        now=T0,
        retry_after=2,
    )


def test_a_speak_appends_the_next_seq_conditionally_and_counts_as_activity() -> None:
    earlier = [_task(1), _task(2)]
    write = _speak(_session(earlier), voice={"id": "espeak:en-gb", "speed": 1.5})
    assert write.task.seq == 3
    assert write.task.voice is not None
    assert write.task.voice.id == "espeak:en-gb"
    assert write.patch["metadata"] == {"resourceVersion": "42"}
    spec = write.patch["spec"]
    assert [t["seq"] for t in spec["speech"]] == [1, 2, 3]
    assert spec["speech"][-1]["id"] == write.task.id
    assert spec["speech"][-1]["voice"] == {"id": "espeak:en-gb", "speed": 1.5}
    assert spec["keepAliveAt"] == spec["speech"][-1]["requestedAt"]
    assert datetime.fromisoformat(spec["keepAliveAt"]) == T0
    assert "speechClearedThrough" not in spec  # not an interrupt


def test_seqs_continue_above_an_interrupt_even_with_no_task_left() -> None:
    assert _speak(_session([], cleared=7)).task.seq == 8


def test_a_speak_with_interrupt_clears_through_the_last_task_and_goes_next() -> None:
    write = _speak(_session([_task(1), _task(2)], cleared=1), interrupt=True)
    assert write.patch["spec"]["speechClearedThrough"] == 2
    assert write.task.seq == 3


def test_an_interrupting_speak_on_an_empty_session_writes_no_clear() -> None:
    assert "speechClearedThrough" not in _speak(_session(), interrupt=True).patch["spec"]


def test_the_queue_is_full_at_the_unfinished_limit_but_an_interrupt_replaces_it() -> None:
    full = _session([_task(seq) for seq in range(1, SPEECH_UNFINISHED_MAX + 1)])
    with pytest.raises(ApiError) as refused:
        _speak(full)
    error = refused.value
    assert (error.status, error.type, error.code) == (
        429,
        ErrorType.RATE_LIMIT,
        "speech_queue_full",
    )
    assert error.headers() == {"Retry-After": "2"}
    assert _speak(full, interrupt=True).task.seq == SPEECH_UNFINISHED_MAX + 1


def test_finished_and_cleared_tasks_do_not_count_towards_the_queue() -> None:
    tasks = [_task(seq) for seq in range(1, SPEECH_UNFINISHED_MAX + 1)]
    done = {"id": tasks[-1]["id"], "state": "done"}
    assert _speak(_session(tasks, reports=[done])).task.seq == SPEECH_UNFINISHED_MAX + 1
    assert _speak(_session(tasks, cleared=1)).task.seq == SPEECH_UNFINISHED_MAX + 1


def test_a_full_list_drops_its_oldest_finished_task_to_stay_within_the_limit() -> None:
    tasks = [_task(seq) for seq in range(1, SPEECH_TASKS_MAX + 1)]
    reports = [{"id": t["id"], "state": "done"} for t in tasks[:20]]
    write = _speak(_session(tasks, reports=reports))
    kept = write.patch["spec"]["speech"]
    assert len(kept) == SPEECH_TASKS_MAX
    assert [t["seq"] for t in kept] == [*range(2, SPEECH_TASKS_MAX + 1), SPEECH_TASKS_MAX + 1]


def test_an_interrupt_lists_the_unfinished_tasks_and_clears_through_the_last() -> None:
    tasks = [_task(1), _task(2), _task(3)]
    reports = [
        {"id": tasks[0]["id"], "state": "done"},
        {"id": tasks[1]["id"], "state": "speaking"},
    ]
    write = speech_mapping.interrupt_write(_session(tasks, reports=reports))
    assert write.result.session_id == SESSION_ID
    assert write.result.interrupted_task_ids == [tasks[1]["id"], tasks[2]["id"]]
    assert write.patch == {
        "metadata": {"resourceVersion": "42"},
        "spec": {"speechClearedThrough": 3},
    }


def _all_done() -> AvatarSession:
    tasks = [_task(1), _task(2)]
    return _session(tasks, reports=[{"id": t["id"], "state": "done"} for t in tasks])


@pytest.mark.parametrize(
    "session",
    [_session(), _session([_task(1), _task(2)], cleared=2), _all_done()],
    ids=["no tasks", "all cleared", "all done"],
)
def test_an_interrupt_with_nothing_left_writes_nothing(session: AvatarSession) -> None:
    write = speech_mapping.interrupt_write(session)
    assert write.patch is None
    assert write.result.interrupted_task_ids == []


def test_a_task_view_follows_the_workers_report() -> None:
    task = _task(1)
    report = {
        "id": task["id"],
        "state": "failed",
        "startedAt": "2026-11-21T08:00:02Z",
        "finishedAt": "2026-11-21T08:00:03Z",
        "message": "tts_unavailable: the speech server did not answer",
    }
    session = _session([task], reports=[report])
    view = speech_mapping.to_task_view(session, session.spec.speech[0])
    assert isinstance(view, SpeakTaskView)
    assert (view.id, view.session_id, view.state) == (task["id"], SESSION_ID, SpeechState.FAILED)
    assert view.text == "hello 1"
    assert view.created_at == T0 + timedelta(seconds=1)
    assert view.started_at == datetime(2026, 11, 21, 8, 0, 2, tzinfo=UTC)
    assert view.finished_at == datetime(2026, 11, 21, 8, 0, 3, tzinfo=UTC)
    assert view.message == "tts_unavailable: the speech server did not answer"


def test_a_task_with_no_report_is_queued_or_interrupted_by_a_clear() -> None:
    tasks = [_task(1), _task(2)]
    session = _session(tasks, cleared=1)
    states = [speech_mapping.to_task_view(session, t).state for t in session.spec.speech]
    assert states == [SpeechState.INTERRUPTED, SpeechState.QUEUED]
    view = speech_mapping.to_task_view(session, session.spec.speech[0])
    assert (view.started_at, view.finished_at, view.message) == (None, None, None)


def test_a_task_view_names_the_voice_it_is_spoken_with() -> None:
    own = {**_task(1), "voice": {"id": "espeak:en-gb", "speed": 0.8}}
    session = _session([own, _task(2)], voice={"id": "espeak:fr-fr", "speed": 1.2})
    views = [speech_mapping.to_task_view(session, t) for t in session.spec.speech]
    assert [(v.voice.id, v.voice.speed) for v in views if v.voice] == [
        ("espeak:en-gb", 0.8),
        ("espeak:fr-fr", 1.2),
    ]
    no_voice = _session([_task(1)])
    assert speech_mapping.to_task_view(no_voice, no_voice.spec.speech[0]).voice is None


def test_find_task_only_finds_the_sessions_own_tasks() -> None:
    task = _task(1)
    session = _session([task])
    found = speech_mapping.find_task(session, task["id"])
    assert isinstance(found, SpeakTask)
    assert found.seq == 1
    assert speech_mapping.find_task(session, new_public_id("spk")) is None
