"""The speech rules without I/O: voices, order, what an interrupt covers, the reports kept, the
ending_soon relay, watch events, speak segments ahead of live audio, TTS settings from env."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import numpy as np
import pytest

from avatar_crds import contract
from avatar_crds.enums import EndReason
from avatar_crds.session import EndingSoon
from avatar_crds.speech import SPEECH_TASKS_MAX, SpeakTaskReport, SpeechState, Voice
from avatar_crds.voices import DEFAULT_VOICE_ID, VoiceRefusal, catalogue
from avatar_worker.audio.segments import SegmentKind, SpeechBuffer
from avatar_worker.session_messages import EndingSoonRelay
from avatar_worker.speak.plan import (
    ResolvedVoice,
    SpeechLedger,
    covered_never_started,
    next_task,
    resolve_voice,
    trimmed,
)
from avatar_worker.tts.settings import TtsSettings
from avatar_worker.watch_events import Changed, Expired, Failed, Progress, interpret
from worker_image.tests.speak_support import speak_task
from worker_image.tests.support import session_resource

NOW = datetime(2026, 1, 1, tzinfo=UTC)
OPENAI_VOICES = json.dumps([{"voice": "alloy", "languages": ["en"], "speed_max": 1.5}])


def test_the_task_voice_then_the_session_voice_then_the_default() -> None:
    voices = catalogue(OPENAI_VOICES)
    task = speak_task(1, "hello")
    default = resolve_voice(task, None, voices)
    assert isinstance(default, ResolvedVoice)
    assert (default.voice.id, default.speed) == (DEFAULT_VOICE_ID, 1.0)

    session_voice = Voice(id="espeak:de", speed=1.2)
    by_session = resolve_voice(task, session_voice, voices)
    assert isinstance(by_session, ResolvedVoice)
    assert (by_session.voice.engine_voice, by_session.speed) == ("de", 1.2)

    own = task.model_copy(update={"voice": Voice(id="openai:alloy", speed=1.5)})
    by_task = resolve_voice(own, session_voice, voices)
    assert isinstance(by_task, ResolvedVoice)
    assert (by_task.voice.engine_voice, by_task.speed) == ("alloy", 1.5)


def test_a_voice_this_worker_does_not_offer_is_refused() -> None:
    task = speak_task(1, "hello").model_copy(update={"voice": Voice(id="openai:alloy")})
    refusal = resolve_voice(task, None, catalogue(""))
    assert isinstance(refusal, VoiceRefusal)
    assert refusal.code == "unknown_voice"
    fast = task.model_copy(update={"voice": Voice(id="openai:alloy", speed=2.0)})
    too_fast = resolve_voice(fast, None, catalogue(OPENAI_VOICES))
    assert isinstance(too_fast, VoiceRefusal)
    assert too_fast.code == "voice_speed_out_of_range"


def test_tasks_are_spoken_in_seq_order_and_finished_or_cleared_ones_never() -> None:
    one, two, three = speak_task(1, "a"), speak_task(2, "b"), speak_task(3, "c")
    tasks = [three, one, two]
    assert next_task(tasks, [], 0) == one
    done = [SpeakTaskReport(id=one.id, state=SpeechState.DONE)]
    assert next_task(tasks, done, 0) == two
    speaking = [SpeakTaskReport(id=one.id, state=SpeechState.SPEAKING)]
    assert next_task(tasks, speaking, 0) == one  # a restarted worker speaks it again
    assert next_task(tasks, done, 2) == three
    assert next_task(tasks, done, 3) is None


def test_an_interrupt_covers_queued_tasks_but_not_the_current_or_reported_ones() -> None:
    one, two, three, four = (speak_task(seq, "x") for seq in (1, 2, 3, 4))
    reports = [SpeakTaskReport(id=one.id, state=SpeechState.DONE)]
    covered = covered_never_started([four, three, two, one], reports, 3, current=two.id)
    assert covered == [three]
    assert covered_never_started([one, two], reports, 0, current=None) == []


def test_the_ledger_keeps_the_first_start_and_reports_in_order() -> None:
    ledger = SpeechLedger()
    task = speak_task(1, "a").id
    ledger.started(task, NOW, {task})
    ledger.finished(task, SpeechState.FAILED, NOW.replace(second=3), {task}, "x" * 1000)
    (report,) = ledger.reports()
    assert report.started_at == NOW
    assert report.finished_at == NOW.replace(second=3)
    assert report.message is not None
    assert len(report.message) == 256


def _report(index: int, state: SpeechState) -> SpeakTaskReport:
    return SpeakTaskReport(id=f"spk_{index:026d}", state=state)  # digits are ULID characters


def test_reports_stay_within_the_limit_keeping_what_the_spec_still_lists() -> None:
    finished = [_report(i, SpeechState.DONE) for i in range(SPEECH_TASKS_MAX)]
    speaking = _report(99, SpeechState.SPEAKING)
    in_spec = {r.id for r in finished[:3]} | {speaking.id}
    kept = trimmed([*finished, speaking], in_spec)
    assert len(kept) == SPEECH_TASKS_MAX
    assert speaking in kept
    # The oldest report whose task the API has dropped goes, not the ones it still lists.
    assert finished[3] not in kept
    assert finished[:3] == kept[:3]

    all_listed = {r.id for r in finished} | {speaking.id}
    kept = trimmed([*finished, speaking], all_listed)
    assert finished[0] not in kept  # then the oldest finished one
    assert speaking in kept


def test_ending_soon_is_relayed_once_per_reason_and_time() -> None:
    relay = EndingSoonRelay()
    idle = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=NOW)
    message = relay.new_message(idle)
    assert message is not None
    assert json.loads(message) == {
        "type": "ending_soon",
        "reason": "idle_timeout",
        "at": "2026-01-01T00:00:00Z",
    }
    assert relay.new_message(idle) is None
    assert relay.new_message(None) is None
    later = EndingSoon(reason=EndReason.IDLE_TIMEOUT, at=NOW.replace(minute=5))
    assert relay.new_message(later) is not None
    cap = EndingSoon(reason=EndReason.MAX_DURATION_REACHED, at=NOW)
    assert relay.new_message(cap) is not None


def test_watch_events() -> None:
    session = session_resource(url="wss://example.invalid", room="r").to_k8s()
    session["metadata"]["resourceVersion"] = "42"
    changed = interpret({"type": "MODIFIED", "object": session})
    assert isinstance(changed, Changed)
    assert changed.resource_version == "42"
    bookmark = interpret({"type": "BOOKMARK", "object": {"metadata": {"resourceVersion": "43"}}})
    assert bookmark == Progress("43")
    assert interpret({"type": "ERROR", "object": {"code": 410, "reason": "Expired"}}) == Expired()
    assert isinstance(interpret({"type": "ERROR", "object": {"code": 500}}), Failed)
    broken = {"metadata": {"resourceVersion": "44"}, "spec": {"quality": "nonsense"}}
    unreadable = interpret({"type": "MODIFIED", "object": broken})
    assert isinstance(unreadable, Progress)
    assert unreadable.resource_version == "44"
    deleted = interpret({"type": "DELETED", "object": session})
    assert isinstance(deleted, Progress)
    assert deleted.note


def test_a_speak_segment_plays_ahead_of_live_track_audio() -> None:
    speech = SpeechBuffer(1000, prebuffer_s=0)
    speech.open("track", SegmentKind.TRACK, live=True)
    speech.append("track", np.full(10, 1, dtype=np.int16))
    assert speech.take(10).kind is SegmentKind.TRACK
    speech.open("spk", SegmentKind.SPEAK)
    speech.append("spk", np.full(20, 2, dtype=np.int16))
    speech.close("spk")
    speech.append("track", np.full(10, 1, dtype=np.int16))
    first = speech.take(10)
    assert first.kind is SegmentKind.SPEAK
    assert set(first.samples.tolist()) == {2}
    second = speech.take(10)
    assert second.kind is SegmentKind.SPEAK
    assert [type(e).__name__ for e in second.events] == ["PlaybackFinished"]
    assert speech.take(10).kind is SegmentKind.TRACK  # the live audio resumes


def test_tts_settings_from_env() -> None:
    settings = TtsSettings.from_env(
        {
            contract.ENV_TTS_OPENAI_BASE_URL: " http://tts.internal/v1 ",
            contract.ENV_TTS_OPENAI_API_KEY_FILE: contract.TTS_KEY_FILE,
            contract.ENV_TTS_OPENAI_VOICES: OPENAI_VOICES,
        }
    )
    assert settings.openai_base_url == "http://tts.internal/v1"
    assert settings.catalogue().find("openai:alloy") is not None
    assert TtsSettings.from_env({}).catalogue().find("openai:alloy") is None
    with pytest.raises(ValueError, match=contract.ENV_TTS_OPENAI_VOICES):
        TtsSettings.from_env({contract.ENV_TTS_OPENAI_VOICES: "[{}]"})
