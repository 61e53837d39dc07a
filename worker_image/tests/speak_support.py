"""Helpers for the speech tests: a session source the test feeds new versions into (what the
API server's watch delivers in a pod), speak tasks, and a room listener for data messages."""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from livekit import rtc

from avatar_crds.ids import new_public_id
from avatar_crds.session import AvatarSession, AvatarSessionStatus, EndingSoon
from avatar_crds.speech import SPEAK_TASK_PREFIX, SpeakTask
from avatar_worker.config import FileSessionSource
from avatar_worker.reporting import JsonLinesStatusSink
from avatar_worker.worker import Worker
from worker_image.tests.support import WorkerFiles, within


class FedSessionSource(FileSessionSource):
    """The file source, plus the updates a test feeds in through `feed`."""

    def __init__(self, session_file: str, avatar_file: str | None) -> None:
        super().__init__(session_file, avatar_file)
        self._updates: asyncio.Queue[AvatarSession] = asyncio.Queue()

    def feed(self, session: AvatarSession) -> None:
        self._updates.put_nowait(session)

    async def updates(self, after: AvatarSession) -> AsyncIterator[AvatarSession]:
        while True:
            yield await self._updates.get()


@contextlib.asynccontextmanager
async def fed_worker(
    files: WorkerFiles, **config: Any
) -> AsyncIterator[tuple[Worker, FedSessionSource]]:
    cfg = files.config(**config)
    assert cfg.session_file is not None
    source = FedSessionSource(cfg.session_file, cfg.avatar_file)
    worker = Worker(cfg, source, JsonLinesStatusSink(cfg.status_file))
    task = asyncio.create_task(worker.run())
    try:
        yield worker, source
    finally:
        if not task.done():
            worker.signals.trigger()
            worker.signals.trigger()  # cut: the test is over
        await within(task, timeout=20, what="the worker to stop")


def speak_task(seq: int, text: str) -> SpeakTask:
    return SpeakTask(
        id=new_public_id(SPEAK_TASK_PREFIX), seq=seq, text=text, requested_at=datetime.now(UTC)
    )


def with_speech(
    session: AvatarSession, tasks: list[SpeakTask], cleared_through: int = 0
) -> AvatarSession:
    spec = session.spec.model_copy(
        update={"speech": tasks, "speech_cleared_through": cleared_through}
    )
    return session.model_copy(update={"spec": spec})


def with_ending_soon(session: AvatarSession, ending: EndingSoon | None) -> AvatarSession:
    status = (session.status or AvatarSessionStatus()).model_copy(update={"ending_soon": ending})
    return session.model_copy(update={"status": status})


def report_states(statuses: list[dict[str, Any]], task_id: str) -> list[str]:
    """The task's state in each status snapshot that reports it, repeats collapsed."""
    states: list[str] = []
    for status in statuses:
        for report in status.get("speech", []):
            if report["id"] == task_id and (not states or states[-1] != report["state"]):
                states.append(report["state"])
    return states


def last_report(statuses: list[dict[str, Any]], task_id: str) -> dict[str, Any] | None:
    for status in reversed(statuses):
        for report in status.get("speech", []):
            if report["id"] == task_id:
                found: dict[str, Any] = report
                return found
    return None


@dataclass
class DataListener:
    """Records the data messages a room participant receives, by topic."""

    room: rtc.Room
    received: list[tuple[float, str, dict[str, Any]]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.room.on("data_received", self._on_data)

    def _on_data(self, packet: rtc.DataPacket) -> None:
        self.received.append((time.monotonic(), packet.topic or "", json.loads(packet.data)))

    def on_topic(self, topic: str) -> list[dict[str, Any]]:
        return [body for _, t, body in self.received if t == topic]
