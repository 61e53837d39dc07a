"""`python -m avatar_worker pool` against the real API server and livekit-server, with its own
ServiceAccount token: it learns of its sessions only from its grant (a Role it watches), serves
each on the slot its binding names, leaves when the session ends, and serves the next."""

from __future__ import annotations

import asyncio
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.enums import AspectRatio, FailureReason, Quality
from avatar_crds.session import AvatarSession
from avatar_worker.config import read_avatar_image
from avatar_worker.render.lite import LiteRenderer, Pose
from avatar_worker.render.portrait import load_portrait
from avatar_worker.render.resolution import resolution
from avatar_worker.worker import EXIT_OK
from testbed.controlplane import ControlPlane
from testbed.livekit_server import LiveKitServer
from worker_image.tests.pool_support import (
    WORKER,
    PoolIdentity,
    PoolWorkerProcess,
    Sessions,
    name_of,
)
from worker_image.tests.support import Subscriber, wait_until

pytestmark = [pytest.mark.controlplane, pytest.mark.livekit]

API_POLL_S = 0.1


@pytest.fixture
def identity(crds: None, api_client: k8s.ApiClient, namespace: str) -> PoolIdentity:
    return PoolIdentity.create(api_client, namespace)


@pytest.fixture
def sessions(api_client: k8s.ApiClient, namespace: str, livekit_server: LiveKitServer) -> Sessions:
    return Sessions(api_client, namespace, livekit_server)


@asynccontextmanager
async def pool_worker(
    control_plane: ControlPlane, identity: PoolIdentity, directory: Path, *, slots: int
) -> AsyncIterator[PoolWorkerProcess]:
    process = PoolWorkerProcess(control_plane, identity, directory, slots=slots)
    try:
        await wait_until(
            lambda: process.ready_file.exists() or process.popen.poll() is not None,
            timeout=60,
            what="the pool worker to be ready",
            interval=API_POLL_S,
        )
        assert process.ready_file.exists(), process.stderr()[-3000:]
        yield process
    finally:
        process.stop()


@asynccontextmanager
async def watching(livekit: LiveKitServer, session: AvatarSession) -> AsyncIterator[Subscriber]:
    viewer = Subscriber()
    await viewer.join(livekit, _room(session))
    try:
        yield viewer
    finally:
        await viewer.leave()


def _room(session: AvatarSession) -> str:
    livekit = session.spec.transport.livekit
    assert livekit is not None
    return livekit.room_name


def _field(sessions: Sessions, session: AvatarSession, key: str) -> Callable[[], Any]:
    return lambda: (sessions.worker_status(session) or {}).get(key)


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _publishes(sessions: Sessions, session: AvatarSession, viewer: Subscriber) -> None:
    """The worker's frames reach a viewer in the session's room, and its status says so."""
    await wait_until(lambda: viewer.stamps(), timeout=30, what=f"frames in {_room(session)}")
    await wait_until(
        _field(sessions, session, "firstFrameAt"),
        timeout=10,
        what="status.worker.firstFrameAt",
        interval=API_POLL_S,
    )


def test_a_slot_serves_its_session_leaves_when_it_ends_and_serves_the_next(
    control_plane: ControlPlane,
    identity: PoolIdentity,
    sessions: Sessions,
    livekit_server: LiveKitServer,
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with pool_worker(control_plane, identity, tmp_path, slots=1) as process:
            a = sessions.create()
            sessions.bind(a, identity, slot=0)
            identity.grant(a)
            async with watching(livekit_server, a) as viewer:
                await _publishes(sessions, a, viewer)
                ended_at = sessions.end(a)
                await wait_until(
                    _field(sessions, a, "leftAt"),
                    timeout=10,
                    what="A's status.worker.leftAt",
                    interval=API_POLL_S,
                )
                await wait_until(
                    lambda: WORKER not in viewer.room.remote_participants,
                    timeout=5,
                    what="the worker to leave A's room",
                )
            a_left = sessions.worker_status(a)
            assert a_left is not None
            assert _time(a_left["leftAt"]) - ended_at <= timedelta(seconds=1)
            assert process.logged("leaving the session", session=name_of(a), slot=0)

            # The operator sees leftAt, ends A and binds B to the freed slot.
            sessions.end(a, "ended")
            b = sessions.create()
            sessions.bind(b, identity, slot=0)
            identity.grant(b)
            async with watching(livekit_server, b) as viewer:
                await _publishes(sessions, b, viewer)
                b_status = sessions.worker_status(b)
                assert b_status is not None
                assert _time(b_status["firstFrameAt"]) > _time(a_left["leftAt"])
                assert b_status.get("leftAt") is None
                await wait_until(  # a heartbeat after the first frame's report
                    lambda: (
                        (sessions.worker_status(b) or {}).get("heartbeatAt", "")
                        > b_status["heartbeatAt"]
                    ),
                    timeout=15,
                    what="B's next heartbeat",
                    interval=API_POLL_S,
                )
                assert sessions.worker_status(a) == a_left  # B's reports went to B only
                assert process.logged("joined the room", session=name_of(b), slot=0)

                process.popen.send_signal(signal.SIGTERM)
                assert await asyncio.to_thread(process.wait, 30) == EXIT_OK
                await wait_until(
                    lambda: WORKER not in viewer.room.remote_participants,
                    timeout=5,
                    what="the worker to leave B's room",
                )
            assert not process.ready_file.exists()
            assert process.logged("drained", session=name_of(b), slot=0)
            text = process.stderr()
            for token in sessions.tokens.values():
                assert token not in text
            assert all("event" in entry and "level" in entry for entry in process.events())

    asyncio.run(scenario())


def test_a_granted_session_bound_elsewhere_is_not_served(
    control_plane: ControlPlane,
    identity: PoolIdentity,
    sessions: Sessions,
    livekit_server: LiveKitServer,
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with pool_worker(control_plane, identity, tmp_path, slots=2) as process:
            elsewhere, beyond, here = sessions.create(), sessions.create(), sessions.create()
            sessions.bind(elsewhere, identity, slot=0, pod=f"{identity.pool}-other")
            sessions.bind(beyond, identity, slot=2)
            sessions.bind(here, identity, slot=0)
            identity.grant(elsewhere, beyond, here)
            async with watching(livekit_server, here) as viewer:
                await _publishes(sessions, here, viewer)
            for refused, why in (
                (elsewhere, f"the session is bound to another worker, {identity.pool}-other"),
                (beyond, "slot 2 is beyond this worker's 2 slots"),
            ):
                name = name_of(refused)
                await wait_until(
                    partial(process.logged, "not serving a granted session", session=name),
                    timeout=10,
                    what=f"the worker to refuse {name}",
                    interval=API_POLL_S,
                )
                (entry,) = process.logged("not serving a granted session", session=name)
                assert entry["why"] == why
                assert sessions.worker_status(refused) is None
                assert not process.logged("joined the room", session=name)

    asyncio.run(scenario())


def test_two_sessions_at_once_on_two_slots_both_publish(
    control_plane: ControlPlane,
    identity: PoolIdentity,
    sessions: Sessions,
    livekit_server: LiveKitServer,
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with pool_worker(control_plane, identity, tmp_path, slots=2) as process:
            a, b = sessions.create(), sessions.create()
            sessions.bind(a, identity, slot=0)
            sessions.bind(b, identity, slot=1)
            identity.grant(a, b)
            async with (
                watching(livekit_server, a) as viewer_a,
                watching(livekit_server, b) as viewer_b,
            ):
                await _publishes(sessions, a, viewer_a)
                await _publishes(sessions, b, viewer_b)
                frames_a, frames_b = len(viewer_a.video), len(viewer_b.video)
                await wait_until(
                    lambda: (
                        len(viewer_a.video) > frames_a + 25 and len(viewer_b.video) > frames_b + 25
                    ),
                    timeout=10,
                    what="both rooms to keep getting frames",
                )
                for session, slot in ((a, 0), (b, 1)):
                    assert process.logged("joined the room", session=name_of(session), slot=slot)

                # The grant no longer names A: its slot leaves A's room at once, B goes on.
                revoked_at = datetime.now(UTC)
                identity.grant(b)
                await wait_until(
                    lambda: WORKER not in viewer_a.room.remote_participants,
                    timeout=5,
                    what="the worker to leave A's room",
                )
                # The room may report the departure before the worker's disconnect returns.
                await wait_until(
                    partial(process.logged, "left the room", session=name_of(a)),
                    timeout=5,
                    what="the worker's log line for leaving A's room",
                )
                (left,) = process.logged("left the room", session=name_of(a))
                assert _time(left["timestamp"]) - revoked_at <= timedelta(seconds=1)
                (leaving,) = process.logged("leaving the session", session=name_of(a))
                assert leaving["mode"] == "cut"
                frames_b = len(viewer_b.video)
                await wait_until(
                    lambda: len(viewer_b.video) > frames_b + 25,
                    timeout=10,
                    what="B's room to keep getting frames",
                )
                assert WORKER in viewer_b.room.remote_participants

    asyncio.run(scenario())


def test_a_token_that_cannot_be_read_fails_only_its_session(
    control_plane: ControlPlane,
    identity: PoolIdentity,
    sessions: Sessions,
    livekit_server: LiveKitServer,
    tmp_path: Path,
) -> None:
    async def scenario() -> None:
        async with pool_worker(control_plane, identity, tmp_path, slots=3) as process:
            tokenless, fine = sessions.create(with_token=False), sessions.create()
            # A Secret of the token's name that the session does not own: not its token.
            forged = sessions.create(with_token=False)
            k8s.CoreV1Api(sessions.api).create_namespaced_secret(
                sessions.namespace,
                k8s.V1Secret(
                    metadata=k8s.V1ObjectMeta(name=contract.token_secret_name(name_of(forged))),
                    string_data={contract.TOKEN_SECRET_KEY: FORGED_TOKEN},
                ),
            )
            sessions.bind(tokenless, identity, slot=0)
            sessions.bind(fine, identity, slot=1)
            sessions.bind(forged, identity, slot=2)
            identity.grant(tokenless, fine, forged)
            async with watching(livekit_server, fine) as viewer:
                await _publishes(sessions, fine, viewer)
                failure = await _failure(sessions, tokenless)
                assert failure["reason"] == FailureReason.TRANSPORT_AUTH_FAILED.value
                assert "404" in failure["message"]
                refused = await _failure(sessions, forged)
                assert refused["reason"] == FailureReason.TRANSPORT_AUTH_FAILED.value
                assert "not owned by this session" in refused["message"]
                assert FORGED_TOKEN not in refused["message"]
                # The operator fails it and releases its slot; the next session on it is served.
                sessions.end(tokenless, "failed", failure["reason"])
                after = sessions.create()
                sessions.bind(after, identity, slot=0)
                identity.grant(fine, after)
                async with watching(livekit_server, after) as viewer_after:
                    await _publishes(sessions, after, viewer_after)
                assert WORKER in viewer.room.remote_participants  # still served throughout
            assert process.logged("the slot is free", session=name_of(tokenless), slot=0)

    asyncio.run(scenario())


FORGED_TOKEN = "forged-token-do-not-use"


async def _failure(sessions: Sessions, session: AvatarSession) -> dict[str, Any]:
    await wait_until(
        _field(sessions, session, "failure"),
        timeout=10,
        what="status.worker.failure",
        interval=API_POLL_S,
    )
    failure: dict[str, Any] = _field(sessions, session, "failure")()
    return failure


def test_a_kept_avatar_is_drawn_only_for_a_session_granted_it(
    control_plane: ControlPlane,
    identity: PoolIdentity,
    sessions: Sessions,
    livekit_server: LiveKitServer,
    tmp_path: Path,
) -> None:
    """The second lite session of an avatar starts from the rig the first one prepared, and
    shows the avatar; a session whose grant does not name the avatar gets nothing of it, kept
    or not: every session reads its Avatar with its own grant before the cache is asked."""
    store = tmp_path / "store"
    avatar = sessions.create_avatar(store)
    portrait = load_portrait(read_avatar_image(avatar, str(store)), avatar.face)
    at_rest = _thumbnail(LiteRenderer(portrait, LITE_SIZE).render_pose(Pose()))

    async def served(session: AvatarSession) -> list[float]:
        """How far each of its first frames is from the avatar at rest (mean per channel)."""
        viewer = Subscriber(analyse=_thumbnail)
        await viewer.join(livekit_server, _room(session))
        try:
            await wait_until(
                lambda: len(viewer.video) >= 10, timeout=30, what=f"frames in {_room(session)}"
            )
        finally:
            await viewer.leave()
        return [float(np.abs(frame.value - at_rest).mean()) for frame in viewer.video[:10]]

    async def scenario() -> None:
        async with pool_worker(control_plane, identity, tmp_path, slots=1) as process:
            first, second = (
                sessions.create(quality=Quality.LITE),
                sessions.create(quality=Quality.LITE),
            )
            for session in (first, second):
                sessions.bind(session, identity, slot=0)
                identity.grant(session)
                distances = await served(session)
                assert max(distances) < AVATAR_LIKENESS, distances
                sessions.end(session, "ended")
            (prepared,) = process.logged("the avatar is ready", session=name_of(first))
            (kept,) = process.logged("the avatar is ready", session=name_of(second))
            assert prepared["cached"] is False
            assert kept["cached"] is True

            refused = sessions.create(quality=Quality.LITE)
            sessions.bind(refused, identity, slot=0)
            identity.grant(refused, avatars=False)
            failure = await _failure(sessions, refused)
            assert "403" in failure["message"]
            assert failure["reason"] == "avatar_unreadable"  # a typed reason, not internal_error
            assert not process.logged("the avatar is ready", session=name_of(refused))
            assert not process.logged("joined the room", session=name_of(refused))

    asyncio.run(scenario())


LITE_SIZE = resolution(Quality.LITE, AspectRatio.LANDSCAPE)
# Mean difference per channel (0..255) between a received frame and the avatar at rest, at an
# eighth of the size: the idle sway and VP8's first frames measured 3 to 5; a grey frame of the
# astronaut's mean colour is 65 from it, the astronaut mirrored 80.
AVATAR_LIKENESS = 15.0


def _thumbnail(rgba: npt.NDArray[np.uint8]) -> npt.NDArray[np.float32]:
    height, width = rgba.shape[:2]
    blocks = rgba[: height - height % 8, : width - width % 8, :3].astype(np.float32)
    thumb: npt.NDArray[np.float32] = blocks.reshape(height // 8, 8, width // 8, 8, 3).mean(
        axis=(1, 3)
    )
    return thumb
