"""Speak, interrupt and the cutoff warning end to end, on the whole local stack (tools/localstack:
control plane, livekit-server, operator, API, the local GPU node running the real worker as a
process): REST calls through the Python client, and what a viewer in the room gets.

The sessions have no agent: the avatar says only its speak tasks (espeak-ng in the worker).
They use the `mock` tier, which stamps each frame with the mouth opening it drew from its own
audio, so the viewer can tell whether the mouth follows the speech (`lip_sync.py` judges it).
The demo tenant's webhook points at a receiver in this process for the module, and back after.

One session serves the speaking tests (a worker start is the slowest step); the cutoff warning
needs a session of its own, with a short idle timeout, and ends it to check speech is refused.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, TypeVar

import pytest
from kubernetes import client as k8s

import facecast
from avatar_crds.kinds import TENANT
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.speech import SPEAK_TEXT_MAX_CHARS
from avatar_operator.webhooks import verify
from avatar_worker.session_messages import SESSION_TOPIC
from livekit_plugin.tests.lip_sync import FOLLOWS, LipSync, binned_level, binned_mouth, measure
from testbed.webhook_receiver import WebhookReceiver, running_webhook_receiver
from tools.localstack.stack import NAMESPACE, WORKER_IDENTITY, Stack, new_room
from tools.localstack.stack import TENANT as DEMO_TENANT
from worker_image.tests.speak_support import DataListener
from worker_image.tests.support import ReceivedAudio, Subscriber, wait_until, window_rms

pytestmark = [pytest.mark.controlplane, pytest.mark.livekit]

T = TypeVar("T")
SIGNING_KEY = "whsec-speech-test-5c2e"
WEBHOOK_SECRET = "demo-webhook-speech-test"
SPEECH_RMS = 0.02  # of full scale, per received 10 ms frame: speech energy (espeak-ng: 0.1-0.3)
INTERRUPT_BOUND_MS = 200
RESUMED_WINDOW_S = (0.6, 2.0)  # after the interrupting task ended: see interrupt_true_cut_ms
CUT_ATTEMPTS = 2  # see test_interrupt_true_and_post_interrupt_each_cut_within_200_ms
IDLE_TIMEOUT_S = 15  # the operator warns 10 s before (its default): the warning comes at 5 s idle
# About 7 s of espeak-ng: enough speech for the lip-sync measure (at least three 1.28 s segments).
SENTENCE = (
    "Hello, and welcome. I am the avatar of this session, and I am saying a sentence that you"
    " asked for over the REST API, with my lips following every word of it."
)
# About 14 s: long enough to be cut in the middle, whatever the moment.
LONG_TEXT = (
    "Good morning, and welcome to the support line. I can help you with your order, your"
    " invoice or your delivery. Please tell me your order number when you are ready. It starts"
    " with two letters and has eight digits. You will find it in the confirmation email."
)
# ITU-R BT.1359's acceptability for sound against picture (at most 185 ms late, 90 ms early),
# widened on the late side by the viewer's audio jitter buffer, as in the plugin's test.
SOUND_LATE_MS, SOUND_EARLY_MS = -185 - 100, 90


# -- a loop for the module: the viewer and the client outlive one test ------------------------


class LoopThread:
    """An event loop in a thread of its own, for the module: the room connection and the
    client live on it across tests, which run their scenarios on it and wait for the result."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, name="speech-test-loop")
        self._thread.start()

    def run(self, scenario: Awaitable[T], timeout: float = 180) -> T:
        async def wrapped() -> T:
            return await scenario

        return asyncio.run_coroutine_threadsafe(wrapped(), self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(30)
        self.loop.close()


# -- the tenant's webhook endpoint -----------------------------------------------------------


@pytest.fixture(scope="module")
def receiver(local_stack: Stack) -> Iterator[WebhookReceiver]:
    """The demo tenant's `spec.webhook` pointed at a receiver here; restored after."""
    with running_webhook_receiver() as server, local_stack.plane.api_client() as api:
        core, custom = k8s.CoreV1Api(api), k8s.CustomObjectsApi(api)
        secret = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=WEBHOOK_SECRET), string_data={"signing": SIGNING_KEY}
        )
        core.create_namespaced_secret(NAMESPACE, secret)
        tenant: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, NAMESPACE, TENANT.plural, DEMO_TENANT
        )
        before = tenant["spec"].get("webhook")
        webhook = {"url": server.url, "secretRef": {"name": WEBHOOK_SECRET, "key": "signing"}}
        patch_tenant_webhook(custom, webhook)
        try:
            yield server
        finally:
            patch_tenant_webhook(custom, before)
            core.delete_namespaced_secret(WEBHOOK_SECRET, NAMESPACE)


def patch_tenant_webhook(custom: k8s.CustomObjectsApi, webhook: dict[str, Any] | None) -> None:
    custom.patch_namespaced_custom_object(
        GROUP, VERSION, NAMESPACE, TENANT.plural, DEMO_TENANT, {"spec": {"webhook": webhook}}
    )


def assert_signed(receiver: WebhookReceiver) -> None:
    for body, signature, raw in list(receiver.received):
        assert verify(SIGNING_KEY, signature, raw), body["type"]


# -- a session and its viewer -------------------------------------------------------------------


@dataclass
class Live:
    """A running session of the demo avatar, a viewer in its room, and the client."""

    client: facecast.AsyncFacecast
    session_id: str
    viewer: Subscriber
    messages: DataListener
    clock: float = field(default_factory=lambda: time.time() - time.monotonic())

    def monotonic(self, at: datetime) -> float:
        """A wall-clock time (the worker's reports) on this process's monotonic clock."""
        return at.timestamp() - self.clock


async def start_session(stack: Stack, **fields: Any) -> Live:
    room = new_room()
    viewer = Subscriber(identity="viewer", from_identity=WORKER_IDENTITY)
    messages = DataListener(viewer.room)
    await viewer.join(stack.livekit, room)
    client = facecast.AsyncFacecast(stack.api_key, base_url=stack.api_url)
    request = {**stack.session_request(room), "quality": "mock", **fields}
    session = await client.sessions.create(facecast.CreateSessionRequest.model_validate(request))
    live = Live(client, session.id, viewer, messages)
    await wait_until(lambda: len(viewer.stamps()) >= 10, timeout=120, what="the avatar's video")
    assert viewer.audio_track_at is not None, "the avatar publishes no audio track"
    await session_where(live, "running", lambda s: s.status == "running")
    return live


async def end_session(live: Live) -> None:
    try:
        await live.client.sessions.end(live.session_id)
    finally:
        await live.viewer.leave()
        await live.client.aclose()


async def session_where(
    live: Live, what: str, check: Callable[[facecast.Session], bool], within: float = 120
) -> facecast.Session:
    deadline = time.monotonic() + within
    while not check(latest := await live.client.sessions.get(live.session_id)):
        if time.monotonic() > deadline:
            raise AssertionError(f"session {live.session_id} never {what}: {latest}")
        await asyncio.sleep(0.2)
    return latest


async def task_where(
    live: Live, task_id: str, states: tuple[str, ...], within: float = 60
) -> facecast.SpeakTask:
    deadline = time.monotonic() + within
    while (
        task := await live.client.sessions.get_speak_task(live.session_id, task_id)
    ).state not in (states):
        if time.monotonic() > deadline:
            raise AssertionError(f"task {task_id} never {' or '.join(states)}: {task}")
        await asyncio.sleep(0.1)
    return task


def is_loud(audio: ReceivedAudio) -> bool:
    return len(audio.samples) > 0 and float(window_rms(audio.samples, len(audio.samples))[0]) > (
        SPEECH_RMS
    )


def loud_at(viewer: Subscriber, since: float, until: float = float("inf")) -> list[float]:
    """Arrival times of the received frames between `since` and `until` that carry speech."""
    return [a.at for a in list(viewer.audio) if since <= a.at < until and is_loud(a)]


def speech_seconds(viewer: Subscriber, since: float) -> float:
    return float((window_rms(viewer.audio_since(since), 960) > SPEECH_RMS).sum() * 0.02)


def lip_sync(viewer: Subscriber, start: float, end: float) -> LipSync:
    mouth = binned_mouth(((at, stamp.level) for at, stamp in viewer.stamps()), start, end)
    level = binned_level(((a.at, a.samples) for a in list(viewer.audio)), start, end)
    return measure(mouth, level)


async def speaking_aloud(live: Live, task_id: str) -> None:
    """The task is speaking, and the viewer hears it right now (not a pause between words)."""
    await task_where(live, task_id, ("speaking",))
    viewer = live.viewer
    await wait_until(
        lambda: len(loud_at(viewer, time.monotonic() - 0.6)) >= 30,
        timeout=15,
        what="half a second of speech",
    )
    await wait_until(lambda: is_loud(viewer.audio[-1]), timeout=5, what="the avatar speaking")


@pytest.fixture(scope="module")
def loop() -> Iterator[LoopThread]:
    thread = LoopThread()
    yield thread
    thread.close()


@pytest.fixture(scope="module")
def live(local_stack: Stack, loop: LoopThread, receiver: WebhookReceiver) -> Iterator[Live]:
    session = loop.run(start_session(local_stack))
    try:
        yield session
    finally:
        loop.run(end_session(session), timeout=60)


# -- the tests --------------------------------------------------------------------------------


def test_a_sentence_is_heard_lip_synced_done_and_announced(
    live: Live, loop: LoopThread, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        viewer = live.viewer
        asked = time.monotonic()
        task = await live.client.sessions.speak(live.session_id, SENTENCE)
        assert (task.state, task.text) == ("queued", SENTENCE)
        done = await task_where(live, task.id, ("done",))
        assert done.started_at is not None
        assert done.finished_at is not None
        assert done.started_at <= done.finished_at
        finished_at = live.monotonic(done.finished_at)
        # What was said has reached the viewer by now (it plays out before the task is done).
        await wait_until(
            lambda: viewer.audio[-1].at > finished_at + 0.5,
            timeout=10,
            what="the audio after the task",
        )
        heard = speech_seconds(viewer, asked)
        loud = loud_at(viewer, asked)
        print(f"\nspeak: {heard:.2f} s of speech energy at the viewer")
        assert heard >= 4.0, "the viewer does not hear the sentence"
        speaking = [stamp for at, stamp in viewer.stamps() if at >= asked and stamp.speaking]
        assert len(speaking) >= 50, "the avatar's mouth does not move with the speech"
        sync = lip_sync(viewer, loud[0] - 0.2, loud[-1] + 0.2)
        print(
            f"mouth vs speech at the viewer: lag {sync.lag_ms:+.0f} ms, correlation "
            f"{sync.correlation:.2f} (the same mouth at another moment: {sync.unrelated:.2f})"
        )
        assert sync.unrelated < FOLLOWS, "this speech cannot tell a following mouth apart"
        assert sync.correlation >= FOLLOWS, "the avatar's mouth does not follow the speech"
        assert SOUND_LATE_MS <= sync.lag_ms <= SOUND_EARLY_MS

        await wait_until(
            lambda: len(receiver.speak_events(task.id)) >= 2, timeout=30, what="speak webhooks"
        )
        assert receiver.speak_events(task.id) == [
            ("speak.started", "speaking"),
            ("speak.finished", "done"),
        ]
        assert_signed(receiver)

    loop.run(scenario())


def test_two_tasks_play_one_after_the_other_in_order(live: Live, loop: LoopThread) -> None:
    async def scenario() -> None:
        sessions = live.client.sessions
        first = await sessions.speak(live.session_id, "This is the first one.")
        second = await sessions.speak(live.session_id, "And this is the second.")
        assert (await sessions.get_speak_task(live.session_id, second.id)).state == "queued"
        one = await task_where(live, first.id, ("done",))
        two = await task_where(live, second.id, ("done",))
        assert one.started_at is not None
        assert one.finished_at is not None
        assert two.started_at is not None
        assert one.finished_at <= two.started_at  # in order, one at a time

    loop.run(scenario())


async def interrupt_true_cut_ms(live: Live) -> float:
    """`interrupt: true`: the long task is cut and the new one is said next. Everything the
    viewer hears before the new task started playing is the old one. Returns how long after
    the request the old speech was last heard."""
    viewer, sessions = live.viewer, live.client.sessions
    long = await sessions.speak(live.session_id, LONG_TEXT)
    await speaking_aloud(live, long.id)
    asked_at = time.monotonic()
    urgent = await sessions.speak(live.session_id, "Sorry, one moment.", interrupt=True)
    cut = await task_where(live, long.id, ("interrupted",))
    said = await task_where(live, urgent.id, ("done",))
    assert cut.finished_at is not None
    assert said.started_at is not None
    assert cut.finished_at <= said.started_at
    urgent_at = live.monotonic(said.started_at)
    old_after = loud_at(viewer, asked_at, until=urgent_at)
    stop_ms = (max(old_after) - asked_at) * 1000 if old_after else 0.0
    print(
        f"\ninterrupt: true -> the old speech stopped after {stop_ms:.0f} ms,"
        f" the new task playing after {(urgent_at - asked_at) * 1000:.0f} ms"
    )
    assert loud_at(viewer, urgent_at), "the interrupting task is not heard"
    # A new task quick to start bounds the measure above by itself: the old speech must
    # also not come back after it. The window starts late enough that the new task's own
    # tail, held up by a stall of this loaded machine, is not taken for it (seen in CI: a
    # burst received 310 ms after the end), and is long enough that resumed speech, which
    # would go on for seconds, is always loud somewhere in it.
    assert said.finished_at is not None
    said_end = live.monotonic(said.finished_at)
    after, until = (said_end + offset for offset in RESUMED_WINDOW_S)
    await wait_until(lambda: viewer.audio[-1].at > until, timeout=10, what="audio after the task")
    assert not loud_at(viewer, after, until), "the old speech comes back after the new task"
    return stop_ms


async def post_interrupt_cut_ms(live: Live) -> float:
    """POST /interrupt: silent, the mouth closed, the task interrupted and the queued one never
    started. Returns how long after the request sound or mouth movement was last seen."""
    viewer, sessions = live.viewer, live.client.sessions
    again = await sessions.speak(live.session_id, LONG_TEXT)
    queued = await sessions.speak(live.session_id, "Never said.")
    await speaking_aloud(live, again.id)
    interrupted_at = time.monotonic()
    result = await sessions.interrupt(live.session_id)
    assert result.interrupted_task_ids == [again.id, queued.id]
    await wait_until(
        lambda: (
            viewer.audio[-1].at > interrupted_at + 1.0
            and viewer.stamps()[-1][0] > interrupted_at + 1.0
        ),
        timeout=10,
        what="audio and video after the interruption",
    )
    loud_after = loud_at(viewer, interrupted_at)
    silent_ms = (max(loud_after) - interrupted_at) * 1000 if loud_after else 0.0
    moving = [at for at, s in viewer.stamps() if at >= interrupted_at and s.speaking]
    mouth_ms = (max(moving) - interrupted_at) * 1000 if moving else 0.0
    print(f"POST /interrupt -> silent after {silent_ms:.0f} ms, mouth shut after {mouth_ms:.0f}")
    assert (await task_where(live, again.id, ("interrupted",))).started_at is not None
    never = await task_where(live, queued.id, ("interrupted",))
    assert never.started_at is None
    return max(silent_ms, mouth_ms)


def test_interrupt_true_and_post_interrupt_each_cut_within_200_ms(
    live: Live, loop: LoopThread
) -> None:
    """Each kind of cut is tried twice and the quicker one must be within the bound: on this
    2-core machine, shared with the whole stack, one scheduling stall of the worker or the
    subscriber can add 100 ms to a single attempt (seen in CI: 224 ms once, 112 ms usually);
    a cut that is slow by design, or missing, fails both. Their spread is bench/'s matter."""

    async def scenario() -> None:
        interrupt_true = [await interrupt_true_cut_ms(live) for _ in range(CUT_ATTEMPTS)]
        post_interrupt = [await post_interrupt_cut_ms(live) for _ in range(CUT_ATTEMPTS)]
        assert min(interrupt_true) <= INTERRUPT_BOUND_MS, interrupt_true
        assert min(post_interrupt) <= INTERRUPT_BOUND_MS, post_interrupt

    loop.run(scenario())


def test_speech_errors_are_typed_on_the_real_stack(
    live: Live, loop: LoopThread, local_stack: Stack
) -> None:
    async def scenario() -> None:
        fc = facecast.AsyncFacecast(
            local_stack.api_key, base_url=local_stack.api_url, retries=facecast.NO_RETRIES
        )
        try:
            with pytest.raises(facecast.InvalidRequestError) as unknown:
                await fc.sessions.speak(live.session_id, "Hi.", voice=facecast.Voice(id="xx:yy"))
            assert (unknown.value.status, unknown.value.code, unknown.value.param) == (
                400,
                "unknown_voice",
                "voice.id",
            )
            for text in ("", "a" * (SPEAK_TEXT_MAX_CHARS + 1)):
                with pytest.raises(facecast.InvalidRequestError) as invalid:
                    await fc.sessions.speak(live.session_id, text)
                assert (invalid.value.status, invalid.value.param) == (400, "text")
        finally:
            await fc.aclose()

    loop.run(scenario())


def test_ending_soon_reaches_the_room_and_a_keep_alive_prevents_the_cutoff(
    local_stack: Stack, loop: LoopThread, receiver: WebhookReceiver
) -> None:
    async def scenario() -> None:
        live = await start_session(local_stack, idle_timeout_seconds=IDLE_TIMEOUT_S)
        try:
            await wait_until(
                lambda: live.messages.on_topic(SESSION_TOPIC),
                timeout=IDLE_TIMEOUT_S + 30,
                what="the ending_soon message",
            )
            heard_at = time.time()
            message = live.messages.on_topic(SESSION_TOPIC)[0]
            assert (message["type"], message["reason"]) == ("ending_soon", "idle_timeout")
            cutoff = datetime.fromisoformat(message["at"])
            assert heard_at < cutoff.timestamp(), "the warning came after the cutoff"

            def warned() -> list[dict[str, Any]]:
                return [
                    body["data"]
                    for body in receiver.events(live.session_id)
                    if body["type"] == "session.ending_soon"
                ]

            await wait_until(warned, timeout=10, what="the session.ending_soon webhook")
            assert (warned()[0]["reason"], warned()[0]["at"]) == ("idle_timeout", message["at"])
            assert_signed(receiver)

            await live.client.sessions.keep_alive(live.session_id)
            # Past the old cutoff (and the operator's reaction to it), still running.
            await wait_until(
                lambda: time.time() > cutoff.timestamp() + 2.0,
                timeout=IDLE_TIMEOUT_S,
                what="the old cutoff to pass",
                interval=0.2,
            )
            session = await live.client.sessions.get(live.session_id)
            assert (session.status, session.end_reason) == ("running", None)
        finally:
            await live.client.sessions.end(live.session_id)
        try:
            with pytest.raises(facecast.ConflictError) as ended:
                await live.client.sessions.speak(live.session_id, "Too late.")
            assert (ended.value.status, ended.value.code) == (409, "session_not_active")
        finally:
            await live.viewer.leave()
            await live.client.aclose()

    loop.run(scenario())
