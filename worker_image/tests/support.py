"""Test helpers: tokens, session/avatar files, a subscriber that decodes what it receives, an
agent peer built on livekit-agents' own DataStreamAudioOutput, and deadline-bound waits."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import numpy.typing as npt
from livekit import api, rtc
from PIL import Image

from avatar_crds.addresses import AddressAllowList
from avatar_crds.avatar import AvatarSpec, StoredImage
from avatar_crds.enums import AspectRatio, AudioSource, Quality, TransportType, VideoCodec
from avatar_crds.meta import ObjectMeta
from avatar_crds.session import (
    AvatarSession,
    AvatarSessionSpec,
    LiveKitTransport,
    SecretKeyRef,
    Transport,
    VideoSettings,
)
from avatar_worker.config import FileSessionSource, WorkerConfig
from avatar_worker.render import mock
from avatar_worker.reporting import JsonLinesStatusSink
from avatar_worker.worker import Worker
from worker_image.tests.astronaut import ASTRONAUT_FACE, astronaut_rgb

SAMPLE_RATE = 48000
AVATAR_NAME = "av-01jc0000000000000000000000"
SESSION_NAME = "sess-01jc0000000000000000000000"
# The test livekit-server listens on 127.0.0.1, which workers refuse unless the platform allows
# it: the tests allow that one address, as a platform allows its own LiveKit.
LOOPBACK_LIVEKIT_CIDRS = "127.0.0.1/32"
LOOPBACK_LIVEKIT = AddressAllowList.parse(networks=LOOPBACK_LIVEKIT_CIDRS)


class ServerLike(Protocol):
    url: str
    api_key: str
    api_secret: str


# -- waiting --------------------------------------------------------------------------------


async def wait_until(
    predicate: Callable[[], object],
    *,
    timeout: float,  # noqa: ASYNC109 (a deadline for the condition, not a cancellation scope)
    what: str,
    interval: float = 0.02,
) -> None:
    """Poll `predicate` on the event loop until true; AssertionError after `timeout` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}")
        await asyncio.sleep(interval)


async def within(awaitable: Awaitable[Any], *, timeout: float, what: str) -> Any:  # noqa: ASYNC109
    try:
        return await asyncio.wait_for(awaitable, timeout)
    except TimeoutError as exc:
        raise AssertionError(f"timed out after {timeout:.1f}s waiting for {what}") from exc


# -- tokens and resources -------------------------------------------------------------------


def mint_token(
    server: ServerLike,
    identity: str,
    room: str,
    *,
    attributes: dict[str, str] | None = None,
    kind: str | None = None,
    secret: str | None = None,
) -> str:
    token = (
        api.AccessToken(server.api_key, secret or server.api_secret)
        .with_identity(identity)
        .with_grants(api.VideoGrants(room_join=True, room=room))
    )
    if attributes:
        token = token.with_attributes(attributes)
    if kind:
        token = token.with_kind(kind)  # type: ignore[arg-type]
    return token.to_jwt()


def session_resource(
    *,
    url: str,
    room: str,
    quality: Quality = Quality.MOCK,
    aspect: AspectRatio = AspectRatio.LANDSCAPE,
    identity: str = "facecast-worker",
    audio_source: AudioSource = AudioSource.DATA_STREAM,
    subscribe_to: str | None = None,
    synthetic: bool = False,
    codec: VideoCodec = VideoCodec.VP8,
    name: str = SESSION_NAME,
    namespace: str = "default",
) -> AvatarSession:
    return AvatarSession(
        metadata=ObjectMeta(name=name, namespace=namespace),
        spec=AvatarSessionSpec(
            tenant="acme",
            avatar_ref=AVATAR_NAME,
            quality=quality,
            aspect_ratio=aspect,
            video=VideoSettings(codec=codec),
            transport=Transport(
                type=TransportType.LIVEKIT,
                livekit=LiveKitTransport(
                    url=url,
                    room_name=room,
                    worker_identity=identity,
                    audio_source=audio_source,
                    subscribe_to_identity=subscribe_to,
                    synthetic_audio_if_no_input=synthetic,
                ),
            ),
            token_secret_ref=SecretKeyRef(name=f"{name}-token"),
        ),
    )


def write_astronaut_avatar(store: Path, key: str = "astronaut.jpg") -> AvatarSpec:
    """The astronaut as a stored JPEG in `store`, and the Avatar spec that points at it."""
    buffer = io.BytesIO()
    Image.fromarray(astronaut_rgb()).save(buffer, format="JPEG", quality=90)
    payload = buffer.getvalue()
    store.mkdir(parents=True, exist_ok=True)
    (store / key).write_bytes(payload)
    return AvatarSpec(
        tenant="acme",
        image=StoredImage(
            uri=key,
            width=512,
            height=512,
            sha256=hashlib.sha256(payload).hexdigest(),
            size_bytes=len(payload),
        ),
        face=ASTRONAUT_FACE,
    )


@dataclass
class WorkerFiles:
    directory: Path
    session: Path
    avatar: Path
    token: Path
    status: Path
    store: Path

    def statuses(self) -> list[dict[str, Any]]:
        """Every status.worker snapshot the worker wrote so far."""
        if not self.status.exists():
            return []
        lines = self.status.read_text().splitlines()
        return [json.loads(line)["status"]["worker"] for line in lines if line.strip()]

    def config(self, **overrides: Any) -> WorkerConfig:
        values: dict[str, Any] = {
            "session_file": str(self.session),
            "avatar_file": str(self.avatar),
            "status_file": str(self.status),
            "token_file": str(self.token),
            "avatar_store": str(self.store),
            "heartbeat_s": 1.0,
            "join_deadline_s": 5.0,
            "drain_deadline_s": 15.0,
            "transport_allow": LOOPBACK_LIVEKIT,
        }
        values.update(overrides)
        return WorkerConfig(**values)

    def cli_args(self) -> list[str]:
        return [
            "--session-file",
            str(self.session),
            "--avatar-file",
            str(self.avatar),
            "--status-file",
            str(self.status),
            "--token-file",
            str(self.token),
            "--avatar-store",
            str(self.store),
            "--transport-allowed-cidrs",
            LOOPBACK_LIVEKIT_CIDRS,
        ]


def write_worker_files(directory: Path, session: AvatarSession, token: str) -> WorkerFiles:
    directory.mkdir(parents=True, exist_ok=True)
    store = directory / "store"
    avatar = write_astronaut_avatar(store)
    files = WorkerFiles(
        directory=directory,
        session=directory / "session.json",
        avatar=directory / "avatar.json",
        token=directory / "token",
        status=directory / "status.jsonl",
        store=store,
    )
    files.session.write_text(json.dumps(session.to_k8s()))
    files.avatar.write_text(json.dumps({"spec": avatar.to_k8s()}))
    files.token.write_text(token + "\n")
    return files


@contextlib.asynccontextmanager
async def running_worker(files: WorkerFiles, **config: Any) -> AsyncIterator[Worker]:
    """The worker in this event loop, as `python -m avatar_worker` would run it from files."""
    cfg = files.config(**config)
    assert cfg.session_file is not None
    worker = Worker(
        cfg,
        FileSessionSource(cfg.session_file, cfg.avatar_file),
        JsonLinesStatusSink(cfg.status_file),
    )
    task = asyncio.create_task(worker.run())
    try:
        yield worker
    finally:
        if not task.done():
            worker.signals.trigger()
            worker.signals.trigger()  # cut: the test is over
        await within(task, timeout=20, what="the worker to stop")


# -- subscriber -----------------------------------------------------------------------------


@dataclass
class ReceivedFrame:
    at: float  # time.monotonic() on arrival
    width: int
    height: int
    value: Any  # what the analyser made of the pixels (a mock Stamp by default)


@dataclass
class ReceivedAudio:
    at: float
    samples: npt.NDArray[np.int16]


def _rgba(frame: rtc.VideoFrame) -> npt.NDArray[np.uint8]:
    rgba = frame.convert(rtc.VideoBufferType.RGBA)
    return np.frombuffer(bytes(rgba.data), dtype=np.uint8).reshape(rgba.height, rgba.width, 4)


@dataclass
class Subscriber:
    """A plain room participant that watches and listens to the worker."""

    identity: str = "viewer"
    analyse: Callable[[npt.NDArray[np.uint8]], Any] = mock.decode
    from_identity: str = "facecast-worker"
    room: rtc.Room = field(default_factory=rtc.Room)
    video: list[ReceivedFrame] = field(default_factory=list)
    audio: list[ReceivedAudio] = field(default_factory=list)
    video_track_at: float | None = None
    audio_track_at: float | None = None
    _tasks: set[asyncio.Task[None]] = field(default_factory=set)

    async def join(self, server: ServerLike, room: str) -> None:
        self.room.on("track_subscribed", self._on_track)
        await self.room.connect(
            server.url,
            mint_token(server, self.identity, room),
            rtc.RoomOptions(auto_subscribe=True),
        )

    def _on_track(
        self,
        track: rtc.Track,
        publication: rtc.RemoteTrackPublication,
        participant: rtc.RemoteParticipant,
    ) -> None:
        if participant.identity != self.from_identity:
            return
        if track.kind == rtc.TrackKind.KIND_VIDEO:
            self.video_track_at = time.monotonic()
            task = asyncio.create_task(self._read_video(rtc.VideoStream(track)))
        else:
            self.audio_track_at = time.monotonic()
            task = asyncio.create_task(
                self._read_audio(rtc.AudioStream(track, sample_rate=SAMPLE_RATE, num_channels=1))
            )
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _read_video(self, stream: rtc.VideoStream) -> None:
        async for event in stream:
            at = time.monotonic()
            frame = event.frame
            self.video.append(
                ReceivedFrame(at, frame.width, frame.height, self.analyse(_rgba(frame)))
            )

    async def _read_audio(self, stream: rtc.AudioStream) -> None:
        async for event in stream:
            at = time.monotonic()
            pcm = np.frombuffer(bytes(event.frame.data), dtype=np.int16).copy()
            self.audio.append(ReceivedAudio(at, pcm))

    def stamps(self) -> list[tuple[float, mock.Stamp]]:
        return [(f.at, f.value) for f in self.video if isinstance(f.value, mock.Stamp)]

    def audio_since(self, start: float) -> npt.NDArray[np.int16]:
        parts = [a.samples for a in self.audio if a.at >= start]
        return np.concatenate(parts) if parts else np.zeros(0, dtype=np.int16)

    def video_publication(self) -> rtc.RemoteTrackPublication:
        """The worker's video track as the room announces it (codec, published size)."""
        return next(
            p
            for participant in self.room.remote_participants.values()
            for p in participant.track_publications.values()
            if p.kind == rtc.TrackKind.KIND_VIDEO
        )

    async def leave(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        await self.room.disconnect()


# -- an agent that speaks through livekit-agents' DataStreamAudioOutput ----------------------


@dataclass
class RpcRecord:
    at: float
    method: str
    payload: str
    caller: str


class _Recorder(rtc.RpcInterceptor):
    def __init__(self, records: list[RpcRecord]) -> None:
        self._records = records

    async def intercept_incoming(self, invocation: rtc.RpcInvocationData, next: Any) -> Any:
        self._records.append(
            RpcRecord(
                time.monotonic(), invocation.method, invocation.payload, invocation.caller_identity
            )
        )
        return await next(invocation)


@dataclass
class AgentPeer:
    identity: str = "agent"
    room: rtc.Room = field(default_factory=rtc.Room)
    rpcs: list[RpcRecord] = field(default_factory=list)

    async def join(self, server: ServerLike, room: str) -> None:
        await self.room.connect(server.url, mint_token(server, self.identity, room, kind="agent"))
        self.room.local_participant.add_rpc_interceptor(_Recorder(self.rpcs))

    def output(self, worker_identity: str = "facecast-worker", **options: Any) -> Any:
        """livekit-agents' own sender, configured as avatar plugins configure it."""
        from livekit.agents.voice.avatar import DataStreamAudioOutput

        options.setdefault("wait_remote_track", rtc.TrackKind.KIND_VIDEO)
        options.setdefault("wait_playback_start", True)
        return DataStreamAudioOutput(self.room, destination_identity=worker_identity, **options)

    def methods(self, method: str) -> list[RpcRecord]:
        return [record for record in self.rpcs if record.method == method]

    async def leave(self) -> None:
        await self.room.disconnect()


async def speak(
    output: Any,
    pcm: npt.NDArray[np.int16],
    *,
    sample_rate: int = SAMPLE_RATE,
    frame_ms: int = 20,
    flush: bool = True,
    realtime: bool = False,
) -> None:
    """Push a whole segment, then end it: as fast as possible (as a fast TTS does), or paced
    at real time (as a streaming TTS does). Pacing is the sender's behaviour, not a wait."""
    step = sample_rate * frame_ms // 1000
    began = time.monotonic()
    for i, start in enumerate(range(0, len(pcm), step)):
        piece = pcm[start : start + step]
        await output.capture_frame(rtc.AudioFrame(piece.tobytes(), sample_rate, 1, len(piece)))
        if realtime:
            await asyncio.sleep(max(0.0, began + (i + 1) * frame_ms / 1000 - time.monotonic()))
    if flush:
        output.flush()


# -- test audio -----------------------------------------------------------------------------


def tone(
    seconds: float, freq: float = 440.0, amplitude: float = 0.5, rate: int = SAMPLE_RATE
) -> npt.NDArray[np.int16]:
    t = np.arange(int(seconds * rate)) / rate
    return (np.sin(2 * np.pi * freq * t) * amplitude * 32767).astype(np.int16)


def silence(seconds: float, rate: int = SAMPLE_RATE) -> npt.NDArray[np.int16]:
    return np.zeros(int(seconds * rate), dtype=np.int16)


def window_rms(samples: npt.NDArray[np.int16], window: int) -> npt.NDArray[np.float64]:
    usable = len(samples) - len(samples) % window
    blocks = samples[:usable].astype(np.float64).reshape(-1, window) / 32768.0
    rms: npt.NDArray[np.float64] = np.sqrt(np.mean(blocks**2, axis=1))
    return rms
