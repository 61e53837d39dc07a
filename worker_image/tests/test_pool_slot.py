"""The per-session Worker as a pool slot (`pooled`): it leaves when told to or once its session
is over, and reports `leftAt` when it has left; alone in its pod it never reports one."""

from __future__ import annotations

import asyncio
from datetime import datetime
from pathlib import Path

import pytest

from avatar_crds.enums import EndReason, Phase
from avatar_crds.session import AvatarSessionStatus
from avatar_worker.config import FileSessionSource
from avatar_worker.drain import DrainMode
from avatar_worker.reporting import JsonLinesStatusSink
from avatar_worker.worker import EXIT_OK, Worker
from testbed.livekit_server import LiveKitServer
from testbed.process import free_port
from worker_image.tests.support import (
    Subscriber,
    WorkerFiles,
    mint_token,
    session_resource,
    wait_until,
    within,
    write_worker_files,
)

WORKER = "facecast-worker"


def _slot(files: WorkerFiles, *, pooled: bool = True) -> Worker:
    config = files.config(heartbeat_s=30.0)
    assert config.session_file is not None
    return Worker(
        config,
        FileSessionSource(config.session_file, config.avatar_file),
        JsonLinesStatusSink(config.status_file),
        pooled=pooled,
    )


def test_a_slot_whose_session_is_already_over_reports_left_without_joining(
    tmp_path: Path,
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens there: a join would fail
    session = session_resource(url=url, room="over")
    session.status = AvatarSessionStatus(phase=Phase.ENDING, reason=EndReason.USER_ENDED)
    files = write_worker_files(tmp_path, session, "x.y.z")
    worker = _slot(files)
    assert asyncio.run(worker.run()) == EXIT_OK
    assert not worker.ready.is_set()
    (report,) = files.statuses()
    assert report["leftAt"]
    assert report["frames"] == 0
    assert "failure" not in report


@pytest.mark.livekit
@pytest.mark.parametrize("pooled", [True, False])
def test_a_slot_told_to_leave_leaves_and_reports_left(
    livekit_server: LiveKitServer, tmp_path: Path, pooled: bool
) -> None:
    room = f"slot-leave-{pooled}"
    files = write_worker_files(
        tmp_path,
        session_resource(url=livekit_server.url, room=room),
        mint_token(livekit_server, WORKER, room),
    )

    async def scenario() -> datetime:
        viewer = Subscriber()
        await viewer.join(livekit_server, room)
        worker = _slot(files, pooled=pooled)
        running = asyncio.create_task(worker.run())
        try:
            await within(worker.ready.wait(), timeout=30, what="the slot to join")
            await wait_until(lambda: viewer.stamps(), timeout=30, what="frames")
            told = datetime.now().astimezone()
            worker.leave(DrainMode.CUT, "the grant no longer names the session")
            assert await within(running, timeout=5, what="the slot to leave") == EXIT_OK
            await wait_until(
                lambda: WORKER not in viewer.room.remote_participants,
                timeout=5,
                what="the worker to leave the room",
            )
            return told
        finally:
            if not running.done():
                worker.signals.cut.set()
                worker.signals.drain.set()
                await within(running, timeout=20, what="the worker to stop")
            await viewer.leave()

    told = asyncio.run(scenario())
    last = files.statuses()[-1]
    assert last["frames"] > 0
    if pooled:
        assert datetime.fromisoformat(last["leftAt"]) >= told
    else:  # alone in its pod the pod's end says it all (the per-session path is unchanged)
        assert "leftAt" not in last
