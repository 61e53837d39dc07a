"""The worker follows its session on the real API server: a speak task added to the spec after
the worker started reaches it through its watch, and its report lands in `status.worker.speech`
through the status subresource."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_worker.config import KubernetesSessionSource, WorkerConfig
from avatar_worker.reporting import KubernetesStatusSink
from avatar_worker.worker import Worker
from testbed.livekit_server import LiveKitServer
from worker_image.tests.speak_support import speak_task
from worker_image.tests.support import (
    LOOPBACK_LIVEKIT,
    mint_token,
    session_resource,
    wait_until,
    within,
)

pytestmark = [pytest.mark.controlplane, pytest.mark.livekit]


def _session(client: k8s.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = k8s.CustomObjectsApi(client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR_SESSION.plural, name
    )
    assert isinstance(obj, dict)
    return obj


def _reports(client: k8s.ApiClient, namespace: str, name: str) -> list[dict[str, Any]]:
    speech: list[dict[str, Any]] = (
        _session(client, namespace, name).get("status", {}).get("worker", {}).get("speech", [])
    )
    return speech


def test_the_watch_brings_a_new_task_and_the_report_reaches_the_status(
    crds: None,
    api_client: k8s.ApiClient,
    namespace: str,
    livekit_server: LiveKitServer,
    tmp_path: Path,
) -> None:
    room = f"speak-kube-{namespace}"
    session = session_resource(url=livekit_server.url, room=room, namespace=namespace)
    body = session.to_k8s()
    body["metadata"] = {"name": session.metadata.name}
    body.pop("status", None)
    objects = k8s.CustomObjectsApi(api_client)
    objects.create_namespaced_custom_object(GROUP, VERSION, namespace, AVATAR_SESSION.plural, body)
    name = session.metadata.name
    assert name is not None
    token = tmp_path / "token"
    token.write_text(mint_token(livekit_server, "facecast-worker", room))
    config = WorkerConfig(
        session_name=name,
        namespace=namespace,
        token_file=str(token),
        heartbeat_s=30.0,  # every write below is a prompt report of a change, not a heartbeat
        transport_allow=LOOPBACK_LIVEKIT,
    )
    task = speak_task(1, "The watch brought me this sentence.")

    async def scenario() -> None:
        source = KubernetesSessionSource(api_client, namespace, name)
        worker = Worker(config, source, KubernetesStatusSink(api_client, namespace, name))
        running = asyncio.create_task(worker.run())
        try:
            await within(worker.ready.wait(), timeout=30, what="the worker to join")
            await wait_until(lambda: source.watch.connects >= 1, timeout=10, what="the watch")
            patch = {"spec": {"speech": [task.to_k8s()]}}
            await asyncio.to_thread(
                objects.patch_namespaced_custom_object,
                GROUP,
                VERSION,
                namespace,
                AVATAR_SESSION.plural,
                name,
                patch,
            )
            await wait_until(
                lambda: any(
                    r["id"] == task.id and r["state"] == "done"
                    for r in _reports(api_client, namespace, name)
                ),
                timeout=30,
                what="the task's report in status.worker.speech",
                interval=0.2,
            )
        finally:
            worker.signals.trigger()
            await within(running, timeout=20, what="the worker to stop")

    asyncio.run(scenario())
    (report,) = _reports(api_client, namespace, name)
    assert report["startedAt"] <= report["finishedAt"]
    assert (
        _session(client=api_client, namespace=namespace, name=name)["status"]["worker"][
            "lastAudioAt"
        ]
        >= report["startedAt"]
    )
