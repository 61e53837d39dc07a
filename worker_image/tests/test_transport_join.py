"""Joining before publishing, on the real livekit-server: a worker joins its room while its
renderer is prepared and publishes its tracks only when told; left while it joins, it leaves
the room it was joining as soon as it is in it (never staying there unseen)."""

from __future__ import annotations

import asyncio
import time

from livekit import api, rtc

from avatar_crds.enums import AspectRatio, Quality
from avatar_crds.session import VideoSettings
from avatar_worker.media.publisher import MediaOutput
from avatar_worker.render.resolution import video_format
from avatar_worker.transport.livekit import LiveKitTransport
from testbed.livekit_server import LiveKitServer
from worker_image.tests.support import LOOPBACK_LIVEKIT, Subscriber, mint_token, wait_until

WORKER = "facecast-worker"


def transport(server: LiveKitServer, room: str, output: MediaOutput) -> LiveKitTransport:
    return LiveKitTransport(
        url=server.url,
        token=mint_token(server, WORKER, room),
        identity=WORKER,
        attachments=[output],
        join_deadline_s=5.0,
        allow=LOOPBACK_LIVEKIT,
    )


def lite_output() -> MediaOutput:
    return MediaOutput(video_format(Quality.LITE, AspectRatio.LANDSCAPE, VideoSettings()))


def test_a_worker_joined_without_attaching_publishes_only_when_told(
    livekit_server: LiveKitServer,
) -> None:
    async def scenario() -> None:
        viewer = Subscriber(from_identity=WORKER)
        await viewer.join(livekit_server, "join-then-publish")
        output = lite_output()
        worker = transport(livekit_server, "join-then-publish", output)
        try:
            await worker.connect(attach=False)
            await wait_until(
                lambda: WORKER in viewer.room.remote_participants,
                timeout=5,
                what="the worker in the room",
            )
            assert not output.published.is_set()
            assert not viewer.room.remote_participants[WORKER].track_publications
            await worker.attach()
            await wait_until(
                lambda: len(viewer.room.remote_participants[WORKER].track_publications) == 2,
                timeout=5,
                what="the worker's two tracks",
            )
            assert output.published.is_set()
        finally:
            await worker.leave()
            await output.aclose()
            await viewer.leave()

    asyncio.run(scenario())


def test_a_worker_left_while_it_joins_leaves_the_room_once_in_it(
    livekit_server: LiveKitServer,
) -> None:
    room_name = "left-while-joining"

    async def worker_in_room() -> bool:
        async with api.LiveKitAPI(
            livekit_server.http_url, livekit_server.api_key, livekit_server.api_secret
        ) as lk:
            rooms = await lk.room.list_rooms(api.ListRoomsRequest(names=[room_name]))
            if not rooms.rooms:
                return False
            found = await lk.room.list_participants(api.ListParticipantsRequest(room=room_name))
            return WORKER in {p.identity for p in found.participants}

    async def scenario() -> None:
        output = lite_output()
        worker = transport(livekit_server, room_name, output)
        try:
            joining = asyncio.create_task(worker.connect(attach=False))
            await worker.leave()  # before the join is through
            room: rtc.Room = await joining
            assert room.local_participant.identity == WORKER  # it did get in
            assert not room.isconnected()
            assert not worker.connected
            deadline = time.monotonic() + 5
            while await worker_in_room():
                assert time.monotonic() < deadline, "the worker stayed in the room"
                await asyncio.sleep(0.1)  # the server's view, polled until its deadline
            assert not output.published.is_set()
        finally:
            await output.aclose()

    asyncio.run(scenario())
