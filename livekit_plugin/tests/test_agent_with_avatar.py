"""The plugin end to end: a real LiveKit agent job (livekit-agents' AgentServer, dispatched by the
real livekit-server) runs a real AgentSession with the Facecast avatar, against the whole local
stack (tools/localstack: control plane, operator, API, the kubelet stand-in running the real
worker as a process). The session's LLM is a scripted stand-in for a model and its TTS is
espeak-ng, both from the example agent, so nothing here needs a network.

A viewer in the room checks what a user gets: the avatar's video and the agent's speech from the
avatar, lip-synced (the `mock` tier stamps each frame with the mouth opening it drew from its own
audio; `lip_sync.py` says how that is judged), and no audio from the agent itself; an interruption
silences the avatar within 200 ms; shutting the job down ends the Facecast session as
`user_ended`, the worker leaving the room by itself, and leaves no participant or task behind.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, TypeVar

import pytest
from livekit import api as lkapi
from livekit import rtc
from livekit.agents import Agent, AgentServer, AgentSession, JobContext, JobExecutorType, room_io
from livekit.plugins import facecast

from examples.facecast_avatar.espeak_tts import EspeakTTS
from examples.facecast_avatar.scripted_llm import ScriptedLLM
from facecast import AsyncFacecast, Session
from livekit_plugin.tests.lip_sync import FOLLOWS, LipSync, binned_level, binned_mouth, measure
from testbed.wait import wait_for_async
from tools.localstack.stack import Stack
from worker_image.tests.support import ReceivedAudio, Subscriber, window_rms

pytestmark = [pytest.mark.controlplane, pytest.mark.livekit]

T = TypeVar("T")
AGENT_NAME = "facecast-plugin-test"
AVATAR_IDENTITY = "facecast-avatar-agent"
# About 14 s of espeak-ng speech: long enough to measure lip-sync, then interrupt in the middle.
LONG_REPLY = (
    "Hello, I am the avatar of a Facecast session, and I am speaking for the agent in this room. "
    "Everything you hear comes from the agent, and my lips follow it frame by frame, "
    "so you can watch me talk while the agent thinks about what to say next."
)
LOUD = 0.05  # RMS (of full scale) of a 10 ms window that counts as hearing speech
LIP_SYNC_WINDOW_S = 5.0  # of speech: long enough that one stall in delivery is not the measure
# ITU-R BT.1359's acceptability for sound against picture (at most 185 ms late, 90 ms early),
# widened on the late side by what this viewer adds: it shares one process with the agent job,
# and its audio jitter buffer grows with that process's jitter (60-80 ms here, up to 100 ms under
# load; the worker's own A/V test, whose viewer has a process to itself, measures 20-25 ms with
# frame stamps and bounds that offset to 45 ms). A mouth that ignored the speech or ran a third
# of a second off would still fail this bound and the correlation.
SOUND_LATE_MS, SOUND_EARLY_MS = -185 - 100, 90
INTERRUPT_BOUND_MS = 200


@pytest.fixture
def stack(local_stack: Stack) -> Stack:
    return local_stack


@dataclass
class Job:
    """What the job thread hands to the test: its loop, context, session and avatar."""

    ready: threading.Event = field(default_factory=threading.Event)
    loop: asyncio.AbstractEventLoop | None = None
    ctx: JobContext | None = None
    session: AgentSession[None] | None = None
    avatar: facecast.AvatarSession | None = None
    plugin_tasks_after_close: list[str] | None = None

    async def run(self, fn: Callable[[], T]) -> T:
        """`fn()` on the job's own event loop (the job runs in a thread of its own), awaited
        without blocking this loop, which goes on receiving the viewer's media meanwhile."""
        return await asyncio.wrap_future(self._call(fn))

    def _call(self, fn: Callable[[], T]) -> concurrent.futures.Future[T]:
        assert self.loop is not None
        future: concurrent.futures.Future[T] = concurrent.futures.Future()

        def run() -> None:
            try:
                future.set_result(fn())
            except BaseException as error:  # handed to the test, which re-raises it
                future.set_exception(error)

        self.loop.call_soon_threadsafe(run)
        return future


def agent_server(stack: Stack, job: Job) -> AgentServer:
    livekit = stack.livekit
    server = AgentServer(
        job_executor_type=JobExecutorType.THREAD,  # in this process, so the test reaches the job
        ws_url=livekit.url,
        api_key=livekit.api_key,
        api_secret=livekit.api_secret,
        host="127.0.0.1",
        port=0,
        num_idle_processes=0,
    )

    async def entrypoint(ctx: JobContext) -> None:
        await ctx.connect()
        session: AgentSession[None] = AgentSession(
            llm=ScriptedLLM([LONG_REPLY], words_per_chunk=4),
            tts=EspeakTTS(words_per_minute=170),
            resume_false_interruption=False,
        )
        avatar = facecast.AvatarSession(
            avatar_id=stack.avatar_id,
            quality="mock",
            api_url=stack.api_url,
            api_key=stack.api_key,
        )
        await avatar.start(
            session,
            room=ctx.room,
            livekit_url=livekit.url,
            livekit_api_key=livekit.api_key,
            livekit_api_secret=livekit.api_secret,
        )
        await session.start(
            agent=Agent(instructions="Speak when asked."),
            room=ctx.room,
            room_options=room_io.RoomOptions(audio_input=False),
        )

        # Shutdown callbacks run together, after the job has left the room: this one waits for
        # the plugin's own close (aclose is shared and idempotent), then looks for its tasks.
        async def count_leftovers() -> None:
            await avatar.aclose()
            job.plugin_tasks_after_close = [
                t.get_name() for t in asyncio.all_tasks() if _plugin_task(t) and not t.done()
            ]

        ctx.add_shutdown_callback(count_leftovers)

        job.loop, job.ctx, job.session, job.avatar = (
            asyncio.get_running_loop(),
            ctx,
            session,
            avatar,
        )
        job.ready.set()

    server.rtc_session(entrypoint, agent_name=AGENT_NAME)
    return server


def _plugin_task(task: asyncio.Task[Any]) -> bool:
    code = getattr(task.get_coro(), "cr_code", None)
    return code is not None and "livekit/plugins/facecast" in code.co_filename


def is_loud(audio: ReceivedAudio) -> bool:
    return len(audio.samples) > 0 and float(window_rms(audio.samples, len(audio.samples))[0]) > LOUD


def loud_windows(viewer: Subscriber, since: float) -> list[float]:
    """Arrival times of the 10 ms audio windows after `since` that carry speech."""
    return [a.at for a in viewer.audio if a.at >= since and is_loud(a)]


@dataclass
class SpeechHeard:
    """How long the viewer has been hearing the reply, cheap to ask every poll: it looks at each
    window once, so the viewer's event loop does not fall behind its media while waiting."""

    viewer: Subscriber
    since: float
    first: float | None = None
    looked_at: int = 0

    def seconds(self) -> float:
        audio = self.viewer.audio
        while self.first is None and self.looked_at < len(audio):
            window = audio[self.looked_at]
            self.looked_at += 1
            if window.at >= self.since and is_loud(window):
                self.first = window.at
        return audio[-1].at - self.first if self.first is not None else 0.0


def lip_sync(viewer: Subscriber, start: float, end: float) -> LipSync:
    """How the mouth follows the speech at the viewer, from `start` to `end` (lip_sync.py)."""
    mouth = binned_mouth(((at, stamp.level) for at, stamp in viewer.stamps()), start, end)
    level = binned_level(((a.at, a.samples) for a in viewer.audio), start, end)
    return measure(mouth, level)


async def session_where(
    client: AsyncFacecast, session_id: str, what: str, check: Callable[[Session], bool]
) -> Session:
    latest: list[Session] = []

    async def poll() -> None:
        latest.append(await client.sessions.get(session_id))

    async def reached() -> bool:
        await poll()
        return check(latest[-1])

    deadline = time.monotonic() + 90
    while not await reached():
        if time.monotonic() > deadline:
            raise AssertionError(f"session {session_id} never {what}: {latest[-1]}")
        await asyncio.sleep(0.25)
    return latest[-1]


def test_agent_session_speaks_through_the_facecast_avatar(stack: Stack) -> None:
    room_name = f"plugin-{int(time.time())}"

    async def scenario() -> None:
        job = Job()
        server = agent_server(stack, job)
        server_task = asyncio.create_task(server.run())
        viewer = Subscriber(identity="viewer", from_identity=AVATAR_IDENTITY)
        audio_publishers: list[str] = []

        def on_published(pub: rtc.RemoteTrackPublication, who: rtc.RemoteParticipant) -> None:
            if pub.kind == rtc.TrackKind.KIND_AUDIO:
                audio_publishers.append(who.identity)

        viewer.room.on("track_published", on_published)
        left_how: dict[str, str] = {}

        def on_left(who: rtc.RemoteParticipant) -> None:
            reason = who.disconnect_reason
            left_how[who.identity] = rtc.DisconnectReason.Name(reason) if reason else "unknown"

        viewer.room.on("participant_disconnected", on_left)
        livekit_api = lkapi.LiveKitAPI(
            stack.livekit.http_url, stack.livekit.api_key, stack.livekit.api_secret
        )
        client = AsyncFacecast(stack.api_key, base_url=stack.api_url)
        try:
            await viewer.join(stack.livekit, room_name)
            await wait_for_async(lambda: server.id != "unregistered", within=30, description="reg")
            await livekit_api.agent_dispatch.create_dispatch(
                lkapi.CreateAgentDispatchRequest(agent_name=AGENT_NAME, room=room_name)
            )
            assert await asyncio.to_thread(job.ready.wait, 120), "the job never started"
            assert job.avatar is not None
            assert job.ctx is not None
            assert job.session is not None
            session_id = job.avatar.session_id
            assert session_id is not None
            ctx, session = job.ctx, job.session
            agent_identity = ctx.local_participant_identity

            # The avatar joins and publishes its video (the plugin waits for it before speaking).
            await wait_for_async(
                lambda: len(viewer.stamps()) >= 10, within=120, description="the avatar's video"
            )
            running = await session_where(
                client, session_id, "running", lambda s: s.status == "running"
            )
            assert running.transport.type == "livekit"
            assert running.transport.worker_identity == AVATAR_IDENTITY

            # The agent speaks (scripted LLM -> espeak-ng -> the avatar), lip-synced.
            asked_at = time.monotonic()
            await job.run(session.generate_reply)
            heard = SpeechHeard(viewer, asked_at)
            await wait_for_async(
                lambda: heard.seconds() >= LIP_SYNC_WINDOW_S,
                within=60,
                description=f"{LIP_SYNC_WINDOW_S} s of the agent's speech from the avatar",
            )
            speaking = [at for at, stamp in viewer.stamps() if stamp.speaking and at >= asked_at]
            assert len(speaking) >= 25, "the avatar's mouth does not move with the speech"
            # Judged after the interruption: the measure takes a second of CPU, and frames left
            # waiting meanwhile would reach the viewer as if they came after the interruption.
            assert heard.first is not None
            speech_window = (heard.first - 0.2, time.monotonic())

            # The room hears the agent only through the avatar.
            agent = viewer.room.remote_participants[agent_identity]
            assert not [
                p for p in agent.track_publications.values() if p.kind == rtc.TrackKind.KIND_AUDIO
            ]
            assert agent_identity not in audio_publishers

            # session.interrupt(): the avatar falls silent at the viewer within the bound.
            def interrupt() -> float:
                at = time.monotonic()
                session.interrupt()
                return at

            # In the middle of a word, not in a pause between sentences (about 8 s of the reply
            # are left: an interruption that did not work would be heard in the next second).
            await wait_for_async(
                lambda: is_loud(viewer.audio[-1]),
                within=5,
                description="the avatar speaking",
            )
            interrupted_at = await job.run(interrupt)
            await wait_for_async(
                lambda: any(a.at > interrupted_at + 1.0 for a in viewer.audio),
                within=10,
                description="audio after the interruption",
            )
            loud_after = loud_windows(viewer, interrupted_at)
            stop_ms = (max(loud_after) - interrupted_at) * 1000 if loud_after else 0.0
            speaking_after = [
                at for at, stamp in viewer.stamps() if stamp.speaking and at >= interrupted_at
            ]
            mouth_ms = (max(speaking_after) - interrupted_at) * 1000 if speaking_after else 0.0
            print(
                f"\ninterrupt -> silent after {stop_ms:.0f} ms, mouth shut after {mouth_ms:.0f} ms"
            )
            assert stop_ms <= INTERRUPT_BOUND_MS
            assert mouth_ms <= INTERRUPT_BOUND_MS

            sync = lip_sync(viewer, *speech_window)
            print(
                f"mouth vs speech at the viewer: lag {sync.lag_ms:+.0f} ms, correlation "
                f"{sync.correlation:.2f} (the same mouth at another moment: {sync.unrelated:.2f})"
            )
            assert sync.unrelated < FOLLOWS, "this speech cannot tell a following mouth apart"
            assert sync.correlation >= FOLLOWS, "the avatar's mouth does not follow the speech"
            assert SOUND_LATE_MS <= sync.lag_ms <= SOUND_EARLY_MS

            # Shutting the job down ends the Facecast session, and nothing stays behind.
            await job.run(lambda: ctx.shutdown("test over"))
            ended = await session_where(
                client, session_id, "ended", lambda s: s.status in ("ended", "failed", "canceled")
            )
            assert (ended.status, ended.end_reason) == ("ended", "user_ended"), ended.failure
            await wait_for_async(lambda: not server.active_jobs, within=30, description="job gone")
            assert job.plugin_tasks_after_close == []

            async def others_in_room() -> list[str]:
                listing = await livekit_api.room.list_participants(
                    lkapi.ListParticipantsRequest(room=room_name)
                )
                return [p.identity for p in listing.participants if p.identity != "viewer"]

            deadline = time.monotonic() + 30
            while left := await others_in_room():
                assert time.monotonic() < deadline, f"still in the room: {left}"
                await asyncio.sleep(0.2)
            # The worker drained and left by itself: nobody removed it before the operator had
            # the end (a removed worker exits at once, and the session then fails instead).
            await wait_for_async(
                lambda: AVATAR_IDENTITY in left_how, within=10, description="the avatar leaving"
            )
            print(f"left the room: {left_how}")
            assert left_how.get(AVATAR_IDENTITY) == "CLIENT_INITIATED", left_how
        finally:
            await client.aclose()
            await server.aclose()
            await asyncio.wait_for(server_task, 30)
            await viewer.leave()
            await livekit_api.aclose()

    asyncio.run(scenario())
