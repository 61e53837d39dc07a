"""`python -m avatar_worker` as the pod runs it: failure reasons, logs, and draining on SIGTERM."""

from __future__ import annotations

import asyncio
import io
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image

from avatar_crds.enums import EndReason, FailureReason, Phase, Quality
from avatar_crds.session import AvatarSessionStatus
from avatar_worker.audio.agent_protocol import RPC_PLAYBACK_FINISHED
from avatar_worker.worker import EXIT_FAILED, EXIT_OK
from testbed.livekit_server import LiveKitServer
from testbed.process import free_port
from worker_image.tests.support import (
    AgentPeer,
    Subscriber,
    WorkerFiles,
    mint_token,
    session_resource,
    speak,
    tone,
    wait_until,
    window_rms,
    within,
    write_worker_files,
)

REPO_ROOT = Path(__file__).resolve().parents[2]
WORKER = "facecast-worker"


class WorkerProcess:
    def __init__(self, files: WorkerFiles, *extra: str) -> None:
        self.files = files
        self.stderr_path = files.directory / "worker.stderr"
        self._stderr = self.stderr_path.open("wb")
        self.popen = subprocess.Popen(
            [sys.executable, "-m", "avatar_worker", *files.cli_args(), *extra],
            cwd=REPO_ROOT,
            stdout=subprocess.DEVNULL,
            stderr=self._stderr,
        )

    def wait(self, timeout: float) -> int:
        try:
            return self.popen.wait(timeout=timeout)
        except subprocess.TimeoutExpired as exc:
            raise AssertionError(
                f"worker did not exit within {timeout}s:\n{self.stderr()}"
            ) from exc
        finally:
            self._stderr.close()

    def stop(self) -> None:
        if self.popen.poll() is None:
            self.popen.kill()
            self.popen.wait(timeout=10)
        self._stderr.close()

    def stderr(self) -> str:
        return self.stderr_path.read_text(errors="replace")

    def events(self) -> list[dict[str, Any]]:
        """The worker's log: every line must be one JSON object."""
        return [json.loads(line) for line in self.stderr().splitlines() if line.strip()]


def assert_clean_logs(process: WorkerProcess, token: str) -> None:
    text = process.stderr() + process.files.status.read_text()
    assert token not in text
    assert "eyJ" not in text  # nothing token-shaped either
    events = process.events()
    assert events
    assert all("event" in event and "level" in event for event in events)


# -- failures -------------------------------------------------------------------------------


@pytest.mark.livekit
def test_bad_token_fails_with_transport_auth_failed(
    livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    token = mint_token(livekit_server, WORKER, "bad-token", secret="not-the-secret-" * 3)
    files = write_worker_files(
        tmp_path, session_resource(url=livekit_server.url, room="bad-token"), token
    )
    process = WorkerProcess(files)
    assert process.wait(timeout=60) == EXIT_FAILED
    failure = files.statuses()[-1]["failure"]
    assert failure["reason"] == FailureReason.TRANSPORT_AUTH_FAILED.value
    assert "401" in failure["message"]
    assert_clean_logs(process, token)


def test_unreachable_room_fails_with_room_unreachable(tmp_path: Path) -> None:
    url = f"ws://127.0.0.1:{free_port()}"  # nothing listens there
    token = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJmYWNlY2FzdC13b3JrZXIifQ.c2lnbmF0dXJl"
    files = write_worker_files(tmp_path, session_resource(url=url, room="nowhere"), token)
    process = WorkerProcess(files, "--join-deadline-seconds", "2")
    assert process.wait(timeout=60) == EXIT_FAILED
    failure = files.statuses()[-1]["failure"]
    assert failure["reason"] == FailureReason.ROOM_UNREACHABLE.value
    assert "Connection refused" in failure["message"]
    assert_clean_logs(process, token)


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        ("garbage", FailureReason.AVATAR_UNREADABLE),
        ("truncated", FailureReason.AVATAR_UNREADABLE),
        ("missing", FailureReason.AVATAR_UNREADABLE),
        ("no-avatar", FailureReason.AVATAR_NOT_FOUND),
    ],
)
def test_unreadable_avatar_fails_before_joining(
    tmp_path: Path, damage: str, reason: FailureReason
) -> None:
    url = f"ws://127.0.0.1:{free_port()}"  # never reached: the avatar fails first
    files = write_worker_files(
        tmp_path, session_resource(url=url, room="r", quality=Quality.LITE), "x.y.z"
    )
    avatar = json.loads(files.avatar.read_text())
    image = files.store / avatar["spec"]["image"]["uri"]
    if damage == "garbage":
        payload = b"this is not an image at all"
    elif damage == "truncated":
        buffer = io.BytesIO()
        Image.fromarray(np.zeros((64, 64, 3), dtype=np.uint8)).save(buffer, format="PNG")
        payload = buffer.getvalue()[:40]
    else:
        payload = b""
    if damage == "missing":
        image.unlink()
    elif damage == "no-avatar":
        files.avatar.unlink()
    else:
        import hashlib

        image.write_bytes(payload)  # with a matching sha256: the bytes themselves are bad
        avatar["spec"]["image"]["sha256"] = hashlib.sha256(payload).hexdigest()
        avatar["spec"]["image"]["sizeBytes"] = max(1, len(payload))
        files.avatar.write_text(json.dumps(avatar))
    process = WorkerProcess(files)
    assert process.wait(timeout=60) == EXIT_FAILED
    assert files.statuses()[-1]["failure"]["reason"] == reason.value
    assert not any(event["event"] == "joined the room" for event in process.events())


# -- draining -------------------------------------------------------------------------------


@pytest.mark.livekit
@pytest.mark.parametrize("instruction", ["finish", "cut-by-status", "cut-by-second-signal"])
def test_sigterm_drains(livekit_server: LiveKitServer, tmp_path: Path, instruction: str) -> None:
    room = f"drain-{instruction}"
    token = mint_token(livekit_server, WORKER, room)
    session = session_resource(url=livekit_server.url, room=room)
    files = write_worker_files(tmp_path, session, token)
    segment_s = 3.0

    async def scenario() -> None:
        viewer, agent = Subscriber(), AgentPeer()
        await viewer.join(livekit_server, room)
        await agent.join(livekit_server, room)
        process = WorkerProcess(files)
        try:
            output = agent.output()  # its first frame waits for the worker's video track
            await within(speak(output, tone(segment_s)), timeout=30, what="the worker to listen")
            await wait_until(
                lambda: (window_rms(viewer.audio_since(0), 480) > 0.05).sum() >= 30,
                timeout=20,
                what="the worker to be speaking",
            )
            if instruction == "cut-by-status":
                # What the operator writes when max duration is reached, read at SIGTERM.
                data = json.loads(files.session.read_text())
                data["status"] = AvatarSessionStatus(
                    phase=Phase.ENDING, reason=EndReason.MAX_DURATION_REACHED
                ).to_k8s()
                files.session.write_text(json.dumps(data))
            process.popen.send_signal(signal.SIGTERM)
            if instruction == "cut-by-second-signal":
                await wait_until(
                    lambda: any(e["event"] == "draining" for e in _events(process)),
                    timeout=10,
                    what="the worker to start draining",
                )
                process.popen.send_signal(signal.SIGTERM)
            event = await within(output.wait_for_playout(), timeout=30, what="playout")
            code = await asyncio.to_thread(process.wait, 30)
            assert code == EXIT_OK
            await wait_until(
                lambda: WORKER not in viewer.room.remote_participants,
                timeout=10,
                what="the worker to leave the room",
            )
            finished = agent.methods(RPC_PLAYBACK_FINISHED)
            assert len(finished) == 1
            if instruction == "finish":
                assert event.interrupted is False
                assert event.playback_position == pytest.approx(segment_s, abs=0.05)
            else:
                assert event.interrupted is True
                assert event.playback_position < segment_s - 0.3
            drained = [e for e in process.events() if e["event"] == "drained"]
            assert drained[0]["mode"] == ("finish" if instruction == "finish" else "cut")
            assert any(e["event"] == "tracks unpublished" for e in process.events())
            assert files.statuses()[-1]["frames"] > 0
            assert_clean_logs(process, token)
        finally:
            process.stop()
            await agent.leave()
            await viewer.leave()

    asyncio.run(scenario())


def _events(process: WorkerProcess) -> list[dict[str, Any]]:
    try:
        return process.events()
    except json.JSONDecodeError:
        return []  # a line being written right now
