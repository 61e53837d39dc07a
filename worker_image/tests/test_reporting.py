"""status.worker reporting: the heartbeat rhythm with the JSON-lines sink, and the real
kube-apiserver (status subresource) with the Kubernetes sink and a whole worker."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from avatar_crds.enums import FailureReason
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import WorkerStatus
from avatar_worker.config import KubernetesSessionSource, WorkerConfig
from avatar_worker.reporting import (
    JsonLinesStatusSink,
    KubernetesStatusSink,
    StatusReporter,
    status_patch,
)
from avatar_worker.worker import EXIT_FAILED, Worker
from testbed.livekit_server import LiveKitServer
from worker_image.tests.support import (
    LOOPBACK_LIVEKIT,
    mint_token,
    session_resource,
    wait_until,
    within,
)


def read_lines(path: Path) -> list[dict[str, Any]]:
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_patch_touches_only_status_worker() -> None:
    status = WorkerStatus(
        frames=3, billable_seconds=0.12, first_frame_at=datetime(2026, 1, 1, tzinfo=UTC)
    )
    assert status_patch(status) == {
        "status": {
            "worker": {
                "firstFrameAt": "2026-01-01T00:00:00Z",
                "frames": 3,
                "billableSeconds": 0.12,
                # The worker's speak reports, always whole: a merge patch replaces a list.
                "speech": [],
            }
        }
    }


def test_reporter_heartbeats_reports_first_frame_at_once_and_failures(tmp_path: Path) -> None:
    path = tmp_path / "status.jsonl"
    frames = {"n": 0}

    def snapshot() -> WorkerStatus:
        return WorkerStatus(heartbeat_at=datetime.now(UTC), frames=frames["n"])

    async def scenario() -> None:
        # A long interval: every write below is caused by the reporter's own rules.
        reporter = StatusReporter(JsonLinesStatusSink(str(path)), snapshot, interval_s=300)
        task = asyncio.create_task(reporter.run())
        await wait_until(lambda: len(read_lines(path)) == 1, timeout=5, what="the first heartbeat")
        frames["n"] = 1
        reporter.report_now()  # the first frame is reported without waiting for the heartbeat
        await wait_until(lambda: len(read_lines(path)) == 2, timeout=5, what="the first frame")
        await reporter.fail(FailureReason.ROOM_UNREACHABLE, "gone (token eyJhbGc.eyJzdWI.c2ln)")
        await within(task, timeout=5, what="the heartbeat to stop")

    asyncio.run(scenario())
    lines = [line["status"]["worker"] for line in read_lines(path)]
    assert [line["frames"] for line in lines] == [0, 1, 1]
    assert "failure" not in lines[0]
    assert lines[-1]["failure"] == {
        "reason": "room_unreachable",
        "message": "gone (token [redacted])",
    }


def test_heartbeat_interval(tmp_path: Path) -> None:
    path = tmp_path / "status.jsonl"

    async def scenario() -> None:
        reporter = StatusReporter(
            JsonLinesStatusSink(str(path)), lambda: WorkerStatus(), interval_s=0.05
        )
        task = asyncio.create_task(reporter.run())
        await wait_until(lambda: len(read_lines(path)) >= 4, timeout=5, what="heartbeats")
        await reporter.stop()
        await within(task, timeout=5, what="the heartbeat to stop")

    asyncio.run(scenario())


# -- the real API server --------------------------------------------------------------------


@pytest.fixture
def kube(crds: None, api_client: k8s.ApiClient, namespace: str) -> tuple[k8s.ApiClient, str]:
    return api_client, namespace


def _create_session(client: k8s.ApiClient, namespace: str, url: str, room: str) -> str:
    session = session_resource(url=url, room=room, namespace=namespace)
    body = session.to_k8s()
    body["metadata"] = {"name": session.metadata.name}
    body.pop("status", None)
    k8s.CustomObjectsApi(client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR_SESSION.plural, body
    )
    assert session.metadata.name is not None
    return session.metadata.name


def _worker_status(client: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = k8s.CustomObjectsApi(client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR_SESSION.plural, name
    )
    assert isinstance(obj, dict)
    worker: dict[str, Any] = obj.get("status", {}).get("worker", {})
    return worker


@pytest.mark.controlplane
def test_kubernetes_sink_patches_the_status_subresource(kube: tuple[k8s.ApiClient, str]) -> None:
    client, namespace = kube
    name = _create_session(client, namespace, "wss://example.invalid", "r")
    sink = KubernetesStatusSink(client, namespace, name)
    now = datetime.now(UTC).replace(microsecond=0)
    sink.write(WorkerStatus(heartbeat_at=now, first_frame_at=now, frames=25, billable_seconds=1.0))
    worker = _worker_status(client, namespace, name)
    assert worker["frames"] == 25
    assert worker["billableSeconds"] == 1.0
    assert worker["firstFrameAt"] == now.strftime("%Y-%m-%dT%H:%M:%SZ")


@pytest.mark.controlplane
@pytest.mark.livekit
def test_worker_reports_to_the_api_server(
    kube: tuple[k8s.ApiClient, str], livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    """A whole mock worker reading its session from the API server and reporting there."""
    client, namespace = kube
    room = f"kube-{namespace}"
    name = _create_session(client, namespace, livekit_server.url, room)
    token = tmp_path / "token"
    token.write_text(mint_token(livekit_server, "facecast-worker", room))
    config = WorkerConfig(
        session_name=name,
        namespace=namespace,
        token_file=str(token),
        heartbeat_s=0.5,
        transport_allow=LOOPBACK_LIVEKIT,
    )

    async def scenario() -> None:
        worker = Worker(
            config,
            KubernetesSessionSource(client, namespace, name),
            KubernetesStatusSink(client, namespace, name),
        )
        task = asyncio.create_task(worker.run())
        try:
            await wait_until(
                lambda: _worker_status(client, namespace, name).get("frames", 0) > 25,
                timeout=30,
                what="frames reported to the API server",
            )
        finally:
            worker.signals.trigger()
            await within(task, timeout=20, what="the worker to stop")

    asyncio.run(scenario())
    worker = _worker_status(client, namespace, name)
    assert worker["firstFrameAt"] <= worker["heartbeatAt"]
    assert worker["billableSeconds"] > 0.5
    assert "failure" not in worker


@pytest.mark.controlplane
@pytest.mark.livekit
def test_bad_token_is_reported_to_the_api_server(
    kube: tuple[k8s.ApiClient, str], livekit_server: LiveKitServer, tmp_path: Path
) -> None:
    client, namespace = kube
    room = f"kube-bad-{namespace}"
    name = _create_session(client, namespace, livekit_server.url, room)
    token = tmp_path / "token"
    token.write_text(mint_token(livekit_server, "facecast-worker", room, secret="x" * 40))
    config = WorkerConfig(
        session_name=name,
        namespace=namespace,
        token_file=str(token),
        transport_allow=LOOPBACK_LIVEKIT,
    )
    worker = Worker(
        config,
        KubernetesSessionSource(client, namespace, name),
        KubernetesStatusSink(client, namespace, name),
    )
    assert asyncio.run(worker.run()) == EXIT_FAILED
    failure = _worker_status(client, namespace, name)["failure"]
    assert failure["reason"] == FailureReason.TRANSPORT_AUTH_FAILED.value
    assert "eyJ" not in failure["message"]
