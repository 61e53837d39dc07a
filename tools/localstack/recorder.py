"""For people without a browser: subscribe to the avatar's video and write a few seconds of it
to an .mp4 (H.264 through PyAV's bundled FFmpeg: nothing to download or install)."""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
from livekit import rtc

RECORDER_IDENTITY = "demo-recorder"


@dataclass
class Recording:
    path: Path
    frames: int = 0
    first_frame_monotonic: float | None = None
    size: tuple[int, int] = (0, 0)


async def video_track_of(room: rtc.Room, identity: str, deadline_s: float) -> rtc.RemoteVideoTrack:
    """The first video track `identity` publishes in `room` (subscribed automatically)."""
    found: asyncio.Future[rtc.RemoteVideoTrack] = asyncio.get_running_loop().create_future()

    def on_subscribed(
        track: rtc.Track, _pub: rtc.RemoteTrackPublication, participant: rtc.RemoteParticipant
    ) -> None:
        if (
            participant.identity == identity
            and isinstance(track, rtc.RemoteVideoTrack)
            and not found.done()
        ):
            found.set_result(track)

    room.on("track_subscribed", on_subscribed)
    try:
        for participant in room.remote_participants.values():
            if participant.identity != identity:
                continue
            for publication in participant.track_publications.values():
                if isinstance(publication.track, rtc.RemoteVideoTrack) and not found.done():
                    found.set_result(publication.track)
        return await asyncio.wait_for(found, timeout=deadline_s)
    finally:
        room.off("track_subscribed", on_subscribed)


async def record(
    room: rtc.Room,
    identity: str,
    path: Path,
    *,
    seconds: float,
    deadline_s: float,
    fps: int = 25,
) -> Recording:
    """Write `seconds` of `identity`'s video to `path`; returns when done."""
    track = await video_track_of(room, identity, deadline_s)
    recording = Recording(path)
    stream = rtc.VideoStream(track, format=rtc.VideoBufferType.RGB24)
    path.parent.mkdir(parents=True, exist_ok=True)
    container = av.open(str(path), mode="w")
    encoder = None
    try:
        deadline: float | None = None
        async with asyncio.timeout(deadline_s + seconds):
            async for event in stream:
                frame = event.frame
                now = time.monotonic()
                if recording.first_frame_monotonic is None:
                    recording.first_frame_monotonic = now
                    deadline = now + seconds
                    recording.size = (frame.width, frame.height)
                    encoder = container.add_stream("libx264", rate=fps)
                    encoder.width = frame.width - frame.width % 2
                    encoder.height = frame.height - frame.height % 2
                    encoder.pix_fmt = "yuv420p"
                    encoder.time_base = Fraction(1, fps)
                assert encoder is not None
                pixels = np.frombuffer(frame.data, dtype=np.uint8).reshape(
                    frame.height, frame.width, 3
                )[: encoder.height, : encoder.width]
                video_frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(pixels), "rgb24")
                video_frame.pts = recording.frames
                for packet in encoder.encode(video_frame):
                    container.mux(packet)
                recording.frames += 1
                if deadline is not None and now >= deadline:
                    break
    finally:
        if encoder is not None:
            for packet in encoder.encode(None):
                container.mux(packet)
        container.close()
        await stream.aclose()
    return recording
