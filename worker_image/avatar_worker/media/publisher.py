"""The worker's audio and video tracks: sources that outlive any one room connection.

Sync is driven by the audio clock, the job `rtc.AVSynchronizer` does, made deterministic: the
audio chunk of frame N goes into the audio source (which accepts audio only as fast as it plays,
so it also paces the frame clock), and video frame N is handed to the video source exactly when
that chunk starts to play (plus `VIDEO_OFFSET_MS`). With AVSynchronizer's own pacer the video
queue settled at 0, 1 or 2 frames depending on start-up timing, so the skew varied from run to
run between about 0 and 45 ms; here it is the same every run.

The sources are created once and fed from the first frame on, published or not. Publishing (on
every join) makes tracks from the same sources, so a rejoin resumes the same media without the
frame clock noticing. Both tracks share one `stream` name (one lip-sync group for receivers).
"""

from __future__ import annotations

import asyncio
import time
from collections import deque

import numpy as np
import numpy.typing as npt
from livekit import rtc

from avatar_crds.enums import VideoCodec
from avatar_worker.logging import get_logger
from avatar_worker.render.resolution import VideoFormat

log = get_logger("avatar_worker.media")

SAMPLE_RATE = 48000
CHANNELS = 1
# Audio buffered in the source before it is sent: small, for latency (an interruption is heard
# this much sooner) but enough to ride out a late frame.
AUDIO_QUEUE_MS = 40
# Video is scheduled this much after the audio it belongs to (the event loop adds ~10 ms, so it
# goes out ~20 ms after). Receivers that lip-sync (browsers) then play audio ~20 ms early, inside
# the 45 ms detectability threshold; receivers that do not (the Python SDK) hear it ~20-25 ms
# late, since the audio path (Opus framing, jitter buffer) is ~45 ms longer than the video path.
# Both measured by the mock A/V test.
VIDEO_OFFSET_MS = 10
STREAM_NAME = "facecast-avatar"
AUDIO_TRACK_NAME = "facecast-audio"
VIDEO_TRACK_NAME = "facecast-video"

_CODECS = {VideoCodec.VP8: rtc.VideoCodec.VP8, VideoCodec.H264: rtc.VideoCodec.H264}


class MediaOutput:
    def __init__(self, fmt: VideoFormat, codec: VideoCodec = VideoCodec.VP8) -> None:
        self.format = fmt
        self.codec = codec
        self.sample_rate = SAMPLE_RATE
        self.samples_per_frame = SAMPLE_RATE // fmt.fps
        self.audio_source = rtc.AudioSource(SAMPLE_RATE, CHANNELS, queue_size_ms=AUDIO_QUEUE_MS)
        self.video_source = rtc.VideoSource(fmt.width, fmt.height)
        self._scheduled: dict[int, asyncio.TimerHandle] = {}
        # Send-side A/V skew: when frame N went to the encoder minus when its audio started to.
        self.skew_ms: deque[float] = deque(maxlen=250)
        self.frames_captured = 0
        # Set once the video source holds its first frame: the worker publishes the tracks only
        # then, so they carry the avatar from the moment they are published.
        self.capturing = asyncio.Event()
        self._publications: list[rtc.LocalTrackPublication] = []
        self.published = asyncio.Event()

    # -- frames ---------------------------------------------------------------------------

    async def push(
        self, rgba: npt.NDArray[np.uint8], pcm: npt.NDArray[np.int16], index: int = 0
    ) -> None:
        """One video frame and the audio that plays during it (`samples_per_frame` samples).
        Returns once the audio is queued, which is real time: this paces the frame clock."""
        height, width = rgba.shape[:2]
        video = rtc.VideoFrame(width, height, rtc.VideoBufferType.RGBA, rgba.tobytes())
        audio = rtc.AudioFrame(pcm.tobytes(), self.sample_rate, CHANNELS, len(pcm))
        await self.audio_source.capture_frame(audio)
        # The chunk just queued starts to play once what was queued before it has played.
        loop = asyncio.get_running_loop()
        now = time.monotonic()
        audio_start = now + self.audio_source.queued_duration - len(pcm) / self.sample_rate
        delay = max(0.0, audio_start + VIDEO_OFFSET_MS / 1000 - now)
        self._scheduled[index] = loop.call_later(
            delay, self._capture_video, index, video, audio_start
        )

    def _capture_video(self, index: int, frame: rtc.VideoFrame, audio_start: float) -> None:
        self._scheduled.pop(index, None)
        self.video_source.capture_frame(frame)
        self.frames_captured += 1
        self.capturing.set()
        self.skew_ms.append((time.monotonic() - audio_start) * 1000)

    @property
    def mean_skew_ms(self) -> float | None:
        """Recent mean of (video sent - audio sent) for the same frame; positive: video late."""
        return sum(self.skew_ms) / len(self.skew_ms) if self.skew_ms else None

    async def flush(self) -> None:
        """Drop the audio and video already queued for sending (an interruption)."""
        self.audio_source.clear_queue()
        for handle in self._scheduled.values():
            handle.cancel()
        self._scheduled.clear()

    @property
    def queued_audio_s(self) -> float:
        return float(self.audio_source.queued_duration)

    # -- RoomAttachment -------------------------------------------------------------------

    async def attach(self, room: rtc.Room) -> None:
        audio_track = rtc.LocalAudioTrack.create_audio_track(AUDIO_TRACK_NAME, self.audio_source)
        video_track = rtc.LocalVideoTrack.create_video_track(VIDEO_TRACK_NAME, self.video_source)
        audio_options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_MICROPHONE, stream=STREAM_NAME, dtx=False
        )
        video_options = rtc.TrackPublishOptions(
            source=rtc.TrackSource.SOURCE_CAMERA,
            stream=STREAM_NAME,
            video_codec=_CODECS[self.codec],
            simulcast=False,
            video_encoding=rtc.VideoEncoding(
                max_bitrate=self.format.bitrate_kbps * 1000, max_framerate=float(self.format.fps)
            ),
        )
        participant = room.local_participant
        self._publications = [
            await participant.publish_track(audio_track, audio_options),
            await participant.publish_track(video_track, video_options),
        ]
        self.published.set()
        log.info(
            "tracks published",
            codec=self.codec.value,
            width=self.format.width,
            height=self.format.height,
            fps=self.format.fps,
            bitrate_kbps=self.format.bitrate_kbps,
        )

    async def detach(self, room: rtc.Room) -> None:
        self.published.clear()
        publications, self._publications = self._publications, []
        if not room.isconnected():
            return
        for publication in publications:
            try:
                await room.local_participant.unpublish_track(publication.sid)
            except Exception as exc:
                log.warning("unpublish failed", track=publication.sid, error=str(exc))
        if publications:
            log.info("tracks unpublished")

    async def wait_for_playout(self) -> None:
        await self.audio_source.wait_for_playout()

    async def aclose(self) -> None:
        for handle in self._scheduled.values():
            handle.cancel()
        self._scheduled.clear()
        await self.audio_source.aclose()
        await self.video_source.aclose()
