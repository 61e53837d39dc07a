"""The speech buffer between the audio inputs and the frame clock (pure; no I/O, no clock).

Inputs open *segments* (one per speech turn: one agent byte stream, or the subscribed track),
append mono int16 samples at the output rate, and close them. The frame
clock `take`s exactly one video frame's worth of audio at a time. Playback events come out of
`take` and `clear`, in order, for the caller to report (`lk.playback_started`/`_finished`).

Rules:
- segments play one after another; a new segment starts at a chunk (video frame) boundary;
- a segment starts once `prebuffer_s` of it has arrived (or all of it, if shorter), so audio
  that trickles in at real time does not stutter; a burst (the usual TTS) starts at once;
- a segment that runs dry before it is closed plays silence until more arrives (an underrun);
- `clear` interrupts everything queued, reporting how much of each segment played;
- a *live* segment (a subscribed track) never ends by itself and keeps its backlog short,
  dropping the oldest audio, so latency cannot creep up; a segment with an end (a speak task)
  opens ahead of it, so it plays at once and the live audio resumes after it.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from enum import StrEnum

import numpy as np
import numpy.typing as npt

PCM = npt.NDArray[np.int16]


class SegmentKind(StrEnum):
    AGENT = "agent"  # LiveKit Agents byte stream: playback is reported back to the sender
    TRACK = "track"  # a subscribed audio track: live, never reported
    SPEAK = "speak"  # a speak task of the session (the speak executor reports it)


@dataclass(frozen=True)
class PlaybackStarted:
    segment_id: str
    kind: SegmentKind
    sender: str | None


@dataclass(frozen=True)
class PlaybackFinished:
    segment_id: str
    kind: SegmentKind
    sender: str | None
    position: float  # seconds of the segment that were played
    interrupted: bool


PlaybackEvent = PlaybackStarted | PlaybackFinished


@dataclass(frozen=True)
class Chunk:
    """One video frame's audio: `samples` always has the requested length (zero-padded)."""

    samples: PCM
    used: int  # samples that came from a segment; the rest is silence
    kind: SegmentKind | None  # kind of the segment that supplied them
    events: tuple[PlaybackEvent, ...] = ()


@dataclass
class _Segment:
    id: str
    kind: SegmentKind
    sender: str | None
    live: bool
    parts: deque[PCM] = field(default_factory=deque)
    offset: int = 0  # samples already read from parts[0]
    buffered: int = 0
    played: int = 0
    complete: bool = False
    started: bool = False

    def read_into(self, out: PCM, limit: int) -> int:
        done = 0
        while done < limit and self.parts:
            part = self.parts[0]
            n = min(limit - done, len(part) - self.offset)
            out[done : done + n] = part[self.offset : self.offset + n]
            done += n
            self.offset += n
            if self.offset >= len(part):
                self.parts.popleft()
                self.offset = 0
        self.buffered -= done
        self.played += done
        return done

    def drop_oldest(self, count: int) -> None:
        while count > 0 and self.parts:
            part = self.parts[0]
            n = min(count, len(part) - self.offset)
            self.offset += n
            self.buffered -= n
            count -= n
            if self.offset >= len(part):
                self.parts.popleft()
                self.offset = 0


@dataclass(frozen=True)
class SegmentInfo:
    id: str
    kind: SegmentKind
    sender: str | None
    played_s: float
    buffered_s: float
    complete: bool
    started: bool


class SpeechBuffer:
    def __init__(
        self,
        sample_rate: int,
        *,
        max_buffered_s: float = 300.0,
        live_max_s: float = 0.2,
        live_target_s: float = 0.06,
        prebuffer_s: float = 0.08,
    ) -> None:
        self.sample_rate = sample_rate
        self._prebuffer = int(prebuffer_s * sample_rate)
        self._queue: deque[_Segment] = deque()
        self._by_id: dict[str, _Segment] = {}
        self._max_buffered = int(max_buffered_s * sample_rate)
        self._live_max = int(live_max_s * sample_rate)
        self._live_target = int(live_target_s * sample_rate)
        self.dropped_samples = 0

    # -- inputs -----------------------------------------------------------------------------

    def open(
        self,
        segment_id: str,
        kind: SegmentKind,
        *,
        sender: str | None = None,
        live: bool = False,
    ) -> None:
        if segment_id in self._by_id:
            raise ValueError(f"segment {segment_id!r} is already open")
        segment = _Segment(id=segment_id, kind=kind, sender=sender, live=live)
        first_live = next((i for i, queued in enumerate(self._queue) if queued.live), None)
        if live or first_live is None:
            self._queue.append(segment)
        else:
            self._queue.insert(first_live, segment)
        self._by_id[segment_id] = segment

    def append(self, segment_id: str, samples: PCM) -> bool:
        """Queue samples for a segment; False if it is unknown (cleared, finished) or closed."""
        segment = self._by_id.get(segment_id)
        if segment is None or segment.complete:
            return False
        if len(samples) == 0:
            return True
        room = self._max_buffered - self.buffered_samples
        if room <= 0:
            self.dropped_samples += len(samples)
            return True
        if len(samples) > room:
            self.dropped_samples += len(samples) - room
            samples = samples[:room]
        segment.parts.append(np.ascontiguousarray(samples, dtype=np.int16))
        segment.buffered += len(samples)
        if segment.live and segment.buffered > self._live_max:
            excess = segment.buffered - self._live_target
            segment.drop_oldest(excess)
            self.dropped_samples += excess
        return True

    def close(self, segment_id: str) -> None:
        """No more audio will come for this segment: it finishes once played out."""
        segment = self._by_id.get(segment_id)
        if segment is not None:
            segment.complete = True

    # -- the frame clock --------------------------------------------------------------------

    def take(self, n: int) -> Chunk:
        out = np.zeros(n, dtype=np.int16)
        events: list[PlaybackEvent] = []
        used = 0
        kind: SegmentKind | None = None
        while self._queue:
            segment = self._queue[0]
            if segment.buffered == 0:
                if segment.complete:
                    events.append(self._finish(segment, interrupted=False))
                    continue
                break  # underrun, or nothing received yet: silence
            if not segment.started:
                if segment.buffered < self._prebuffer and not segment.complete and not segment.live:
                    break  # let a little of it arrive first
                segment.started = True
                events.append(PlaybackStarted(segment.id, segment.kind, segment.sender))
            used = segment.read_into(out, n)
            kind = segment.kind
            if segment.buffered == 0 and segment.complete:
                events.append(self._finish(segment, interrupted=False))
            break
        return Chunk(samples=out, used=used, kind=kind, events=tuple(events))

    def peek(self, n: int) -> PCM:
        """Up to `n` samples that the next `take`s will return, without taking them: what the
        segment next to play has buffered, if it is playing or will start at the next take.
        Shorter when less is known (an underrun, or the segment ends: the next one starts at a
        chunk boundary and may not have arrived). A renderer's look-ahead reads it."""
        out = np.zeros(n, dtype=np.int16)
        if not self._queue:
            return out[:0]
        segment = self._queue[0]
        startable = segment.buffered >= self._prebuffer or segment.complete or segment.live
        if not (segment.started or startable):
            return out[:0]
        done, offset = 0, segment.offset
        for part in segment.parts:
            count = min(n - done, len(part) - offset)
            out[done : done + count] = part[offset : offset + count]
            done += count
            offset = 0
            if done == n:
                break
        return out[:done]

    # -- interruption -----------------------------------------------------------------------

    def clear(self, where: Callable[[SegmentInfo], bool] | None = None) -> list[PlaybackFinished]:
        """Interrupt every queued segment (or those `where` selects), in queue order."""
        finished = []
        for segment in list(self._queue):
            if where is None or where(self._info(segment)):
                finished.append(self._finish(segment, interrupted=True))
        return finished

    def clear_after_current(self) -> list[PlaybackFinished]:
        """Interrupt everything queued behind the segment now playing (or next to play)."""
        head = self._queue[0].id if self._queue else None
        return self.clear(lambda info: info.id != head)

    # -- state ------------------------------------------------------------------------------

    @property
    def buffered_samples(self) -> int:
        return sum(segment.buffered for segment in self._queue)

    @property
    def idle(self) -> bool:
        return not self._queue

    def current(self) -> SegmentInfo | None:
        return self._info(self._queue[0]) if self._queue else None

    def segments(self) -> list[SegmentInfo]:
        return [self._info(segment) for segment in self._queue]

    def _info(self, segment: _Segment) -> SegmentInfo:
        return SegmentInfo(
            id=segment.id,
            kind=segment.kind,
            sender=segment.sender,
            played_s=segment.played / self.sample_rate,
            buffered_s=segment.buffered / self.sample_rate,
            complete=segment.complete,
            started=segment.started,
        )

    def _finish(self, segment: _Segment, *, interrupted: bool) -> PlaybackFinished:
        self._queue.remove(segment)
        del self._by_id[segment.id]
        return PlaybackFinished(
            segment_id=segment.id,
            kind=segment.kind,
            sender=segment.sender,
            position=segment.played / self.sample_rate,
            interrupted=interrupted,
        )
