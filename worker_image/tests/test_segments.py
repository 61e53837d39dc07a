from __future__ import annotations

import numpy as np
import pytest

from avatar_worker.audio.segments import (
    PlaybackFinished,
    PlaybackStarted,
    SegmentKind,
    SpeechBuffer,
)

RATE = 1000  # small numbers keep the arithmetic readable
N = 40  # one "frame" of audio


def pcm(n: int, value: int = 1000) -> np.ndarray:
    return np.full(n, value, dtype=np.int16)


def test_empty_buffer_gives_silence_without_events() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    chunk = buffer.take(N)
    assert chunk.used == 0
    assert chunk.events == ()
    assert not chunk.samples.any()
    assert len(chunk.samples) == N
    assert buffer.idle


def test_a_segment_plays_in_order_then_finishes_once() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    buffer.open("a", SegmentKind.AGENT, sender="agent")
    buffer.append("a", np.arange(100, dtype=np.int16))
    buffer.close("a")
    first = buffer.take(N)
    assert first.events == (PlaybackStarted("a", SegmentKind.AGENT, "agent"),)
    assert list(first.samples) == list(range(40))
    second = buffer.take(N)
    assert second.events == ()
    assert list(second.samples) == list(range(40, 80))
    last = buffer.take(N)
    assert last.used == 20
    assert not last.samples[20:].any()
    assert last.events == (PlaybackFinished("a", SegmentKind.AGENT, "agent", 0.1, False),)
    assert buffer.idle


def test_an_underrun_plays_silence_and_the_segment_continues() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    buffer.open("a", SegmentKind.AGENT, sender="agent")
    buffer.append("a", pcm(50))
    buffer.take(N)
    gap = buffer.take(N)
    assert gap.used == 10
    assert gap.events == ()
    assert buffer.take(N).used == 0  # still open: waiting, not finished
    buffer.append("a", pcm(30))
    buffer.close("a")
    tail = buffer.take(N)
    assert tail.used == 30
    assert tail.events == (PlaybackFinished("a", SegmentKind.AGENT, "agent", 0.08, False),)


def test_next_segment_starts_on_the_next_chunk() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    for name in ("a", "b"):
        buffer.open(name, SegmentKind.AGENT, sender="agent")
        buffer.append(name, pcm(50, 7 if name == "a" else 9))
        buffer.close(name)
    buffer.take(N)
    end_of_a = buffer.take(N)
    assert end_of_a.used == 10
    assert not end_of_a.samples[10:].any()
    assert [type(e) for e in end_of_a.events] == [PlaybackFinished]
    start_of_b = buffer.take(N)
    assert start_of_b.events == (PlaybackStarted("b", SegmentKind.AGENT, "agent"),)
    assert set(start_of_b.samples.tolist()) == {9}


def test_clear_interrupts_everything_and_reports_positions() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    buffer.open("a", SegmentKind.AGENT, sender="agent")
    buffer.append("a", pcm(200))
    buffer.open("b", SegmentKind.AGENT, sender="agent")
    buffer.append("b", pcm(200))
    buffer.take(N)
    buffer.take(N)
    finished = buffer.clear()
    assert finished == [
        PlaybackFinished("a", SegmentKind.AGENT, "agent", 0.08, True),
        PlaybackFinished("b", SegmentKind.AGENT, "agent", 0.0, True),
    ]
    assert buffer.idle
    assert buffer.take(N).used == 0
    assert buffer.append("a", pcm(10)) is False  # the rest of a cleared stream is dropped


def test_clear_after_current_keeps_the_current_segment() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    for name in ("a", "b", "c"):
        buffer.open(name, SegmentKind.AGENT, sender="agent")
        buffer.append(name, pcm(50))
    buffer.take(N)
    dropped = buffer.clear_after_current()
    assert [event.segment_id for event in dropped] == ["b", "c"]
    current = buffer.current()
    assert current is not None
    assert current.id == "a"
    assert current.started


def test_clear_can_select_segments() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    buffer.open("agent-1", SegmentKind.AGENT, sender="one")
    buffer.open("agent-2", SegmentKind.AGENT, sender="two")
    finished = buffer.clear(lambda info: info.sender == "two")
    assert [event.segment_id for event in finished] == ["agent-2"]
    assert [info.id for info in buffer.segments()] == ["agent-1"]


def test_empty_closed_segment_finishes_without_starting() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    buffer.open("a", SegmentKind.AGENT, sender="agent")
    buffer.close("a")
    chunk = buffer.take(N)
    assert chunk.events == (PlaybackFinished("a", SegmentKind.AGENT, "agent", 0.0, False),)


def test_a_segment_waits_for_a_little_audio_before_it_starts() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0.08)
    buffer.open("a", SegmentKind.AGENT, sender="agent")
    buffer.append("a", pcm(50))
    assert buffer.take(N).used == 0  # 50 ms trickled in: wait
    buffer.append("a", pcm(50))
    assert buffer.take(N).used == N  # 100 ms: go
    short = SpeechBuffer(RATE, prebuffer_s=0.08)
    short.open("b", SegmentKind.AGENT, sender="agent")
    short.append("b", pcm(10))
    short.close("b")  # short and complete: no reason to wait
    assert short.take(N).used == 10


def test_live_segment_keeps_its_backlog_short() -> None:
    buffer = SpeechBuffer(RATE, live_max_s=0.2, live_target_s=0.06)
    buffer.open("t", SegmentKind.TRACK, live=True)
    for _ in range(10):
        buffer.append("t", pcm(50))  # 0.5 s arrives while nothing is taken
    assert buffer.buffered_samples <= 200
    assert buffer.dropped_samples >= 300
    assert buffer.take(N).used == N


def test_total_buffer_is_bounded() -> None:
    buffer = SpeechBuffer(RATE, max_buffered_s=0.1)
    buffer.open("a", SegmentKind.AGENT, sender="agent")
    buffer.append("a", pcm(150))
    assert buffer.buffered_samples == 100
    assert buffer.dropped_samples == 50


def test_opening_a_segment_twice_is_an_error() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0)
    buffer.open("a", SegmentKind.AGENT)
    with pytest.raises(ValueError, match="already open"):
        buffer.open("a", SegmentKind.AGENT)


def test_peek_shows_what_the_next_takes_return_without_taking_it() -> None:
    buffer = SpeechBuffer(RATE, prebuffer_s=0.08)
    buffer.open("a", SegmentKind.AGENT)
    buffer.append("a", pcm(50, 1))
    assert len(buffer.peek(2 * N)) == 0  # still prebuffering: it may not start next take
    buffer.append("a", np.concatenate([pcm(N, 2), pcm(N, 3)]))
    ahead = buffer.peek(2 * N)
    assert ahead.tolist() == [1] * 50 + [2] * 30
    first = buffer.take(N)
    assert first.samples.tolist() == [1] * N  # peeking took nothing
    assert buffer.peek(2 * N).tolist() == [1] * 10 + [2] * 40 + [3] * 30
    assert buffer.take(N).samples.tolist() == [1] * 10 + [2] * 30
    assert buffer.peek(5 * N).tolist() == [2] * 10 + [3] * 40  # only what has arrived
    buffer.take(N)
    buffer.take(N)
    assert len(buffer.peek(N)) == 0  # an underrun: nothing is known
