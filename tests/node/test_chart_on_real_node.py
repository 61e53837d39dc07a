"""The chart for real: `helm install` onto the test control plane, the operator and the API run
as pods from their images on the real node (the real kubelet on containerd), and a session made
through the API's REST endpoint reaches `running` on a warm worker of the chart's pool, itself a
container from the worker image with the GPU the node's device plugin allocated, which publishes
video into the real livekit-server.

The node has no pod network to the API server and LiveKit (its bridge routes nowhere, and there
is no kube-proxy): the install uses the chart's `hostNetwork` and `kubernetesApi` for that, so the
namespace runs without the restricted Pod Security profile, which forbids host networking (the
pods' own restrictions are the chart's, checked elsewhere). Prints each step's time."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import pytest
import yaml
from kubernetes import client as k8s

from avatar_crds.ids import AVATAR_PREFIX, SESSION_PREFIX, new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.pool import WorkerPool
from avatar_worker.render import mock
from testbed import images
from testbed.controlplane import ControlPlane
from testbed.helm import Helm
from testbed.kwok import GPU_PRESENT_LABEL, GPU_RESOURCE, GPU_TAINT
from testbed.livekit_server import LiveKitServer
from testbed.objects import avatar_manifest
from testbed.process import LOOPBACK, free_port
from testbed.real_node import NODE_TYPE, NODE_TYPE_LABEL, RealNode
from testbed.sessions import Sessions
from testbed.tenants import admin_cli
from testbed.wait import wait_for, wait_for_async
from tests.chart.rendering import API, CHART, FULLNAME, OPERATOR, RELEASE, install_chart_crds
from tests.node.conftest import needs_root
from worker_image.tests.support import Subscriber, mint_token

pytestmark = [
    needs_root,
    pytest.mark.real_node,
    pytest.mark.controlplane,
    pytest.mark.livekit,
    pytest.mark.images,
    pytest.mark.anyio,
    pytest.mark.timeout(2 * images.BUILD_TIMEOUT),
]

WORKER_IDENTITY = "facecast-worker"
START_TIMEOUT = 180.0  # the chart's pods to run: the first use of each image on the node
ON_THE_REAL_NODE = {NODE_TYPE_LABEL: NODE_TYPE}
GPU_TOLERATION = {**GPU_TAINT, "operator": "Equal"}


def install_values(
    node: RealNode, built: dict[str, images.BuiltImage], plane: ControlPlane, ports: dict[str, int]
) -> dict[str, Any]:
    """The chart's values for this node: the images imported into its containerd (no registry),
    everything on the node's network, and the API server and LiveKit on loopback."""
    api_server = urlsplit(plane.server)

    def image(component: str) -> dict[str, str]:
        repository, _, tag = node.pod_images[built[component].tag].rpartition(":")
        return {"repository": repository, "tag": tag, "pullPolicy": "Never"}

    # The real node is tainted as a GPU node: the operator and the API tolerate it here.
    placement = {"nodeSelector": ON_THE_REAL_NODE, "tolerations": [GPU_TOLERATION]}
    return {
        "hostNetwork": True,
        "kubernetesApi": {"host": api_server.hostname, "port": api_server.port},
        "operator": {
            "image": image("operator"),
            "healthPort": ports["operator-health"],
            "metrics": {"port": ports["operator-metrics"]},
            **placement,
        },
        "api": {
            "image": image("api"),
            "replicas": 1,  # one per node on the node's network: the port is the node's
            "port": ports["api"],
            "servedQualities": ["mock"],
            **placement,
        },
        "worker": {
            "image": image("worker"),
            "nodeSelector": {GPU_PRESENT_LABEL: "true", **ON_THE_REAL_NODE},
            "resources": {"requests": {"cpu": "100m", "memory": "256Mi"}},
        },
        # One GPU per worker (the chart's mock pool asks for none): the operator's worker pods
        # must schedule onto the GPU the node's device plugin advertises and be allocated it.
        "pools": {
            "tiers": {"mock": {"slotsPerWorker": 2, "minWorkers": 1, "buffer": 1, "gpus": 1}}
        },
        "transport": {"allowedCidrs": [f"{LOOPBACK}/32"]},
    }


@dataclass(frozen=True)
class Installed:
    api_url: str  # on the node's network
    at: float  # time.monotonic() when `helm install` was run


@pytest.fixture
def installed(
    real_node: RealNode,
    node_images: dict[str, images.BuiltImage],
    control_plane: ControlPlane,
    helm: Helm,
    namespace: str,
    testenv_bin: Path,
    tmp_path: Path,
) -> Iterator[Installed]:
    """The chart installed into `namespace`."""
    install_chart_crds(testenv_bin, control_plane.kubeconfig)
    ports = {name: free_port() for name in ("operator-health", "operator-metrics", "api")}
    values = tmp_path / "values.yaml"
    values.write_text(yaml.safe_dump(install_values(real_node, node_images, control_plane, ports)))
    cluster_helm = helm.with_kubeconfig(control_plane.kubeconfig)
    at = time.monotonic()
    cluster_helm.run("install", RELEASE, CHART, "--namespace", namespace, "--values", values)
    try:
        yield Installed(f"http://{LOOPBACK}:{ports['api']}", at)
    finally:
        cluster_helm.run("uninstall", RELEASE, "--namespace", namespace, "--wait")


def pods(api_client: k8s.ApiClient, namespace: str) -> list[dict[str, Any]]:
    """The namespace's pods as the API server sent them (camelCase keys)."""
    listed = k8s.CoreV1Api(api_client).list_namespaced_pod(namespace)
    items: list[dict[str, Any]] = api_client.sanitize_for_serialization(listed)["items"]
    return items


def ready_pod(api_client: k8s.ApiClient, namespace: str, prefix: str) -> dict[str, Any] | None:
    """The Ready pod whose name starts with `prefix`, if there is one."""
    for pod in pods(api_client, namespace):
        conditions = {c["type"]: c["status"] for c in pod["status"].get("conditions", [])}
        if pod["metadata"]["name"].startswith(prefix) and conditions.get("Ready") == "True":
            return pod
    return None


def pod_steps(pod: dict[str, Any] | None) -> list[str]:
    """A pod's steps as the kubelet recorded them (whole seconds): created, container started,
    Ready (for a worker: its renderer loaded)."""
    assert pod is not None
    created = datetime.fromisoformat(pod["metadata"]["creationTimestamp"])
    (status,) = pod["status"]["containerStatuses"]
    started = datetime.fromisoformat(status["state"]["running"]["startedAt"])
    ready = next(c for c in pod["status"]["conditions"] if c["type"] == "Ready")
    ready_at = datetime.fromisoformat(ready["lastTransitionTime"])
    name = pod["metadata"]["name"]
    return [
        f"{name} created -> container started: {(started - created).total_seconds():.0f} s",
        f"{name} created -> Ready: {(ready_at - created).total_seconds():.0f} s",
    ]


def pod_logs(api_client: k8s.ApiClient, namespace: str) -> str:
    """Every container's log tail, for a failure's message."""
    core = k8s.CoreV1Api(api_client)
    parts = []
    for pod in pods(api_client, namespace):
        name = pod["metadata"]["name"]
        try:
            log = core.read_namespaced_pod_log(name, namespace, tail_lines=40)
        except k8s.ApiException as error:
            log = f"(no log: {error.reason})"
        parts.append(f"----- {name} ({pod['status'].get('phase')})\n{log}")
    return "\n".join(parts)


async def test_a_session_through_the_installed_chart_runs_in_containers_on_the_real_node(
    installed: Installed,
    real_node: RealNode,
    node_images: dict[str, images.BuiltImage],
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    livekit_server: LiveKitServer,
    namespace: str,
) -> None:
    custom = k8s.CustomObjectsApi(api_client)
    steps: list[str] = []

    def step(name: str) -> None:
        steps.append(f"{name}: {time.monotonic() - installed.at:.1f} s after helm install")

    # The operator and the API run from their images, on this node, with the chart's accounts.
    for component, prefix in (("operator", OPERATOR), ("api", API)):
        pod = await asyncio.to_thread(
            wait_for,
            lambda p=prefix: ready_pod(api_client, namespace, p),
            timeout=START_TIMEOUT,
            description=f"{prefix} Ready on the real node",
        )
        assert pod["spec"]["nodeName"] == real_node.name
        assert pod["spec"]["hostNetwork"] is True
        (status,) = pod["status"]["containerStatuses"]
        assert status["image"] == real_node.pod_images[node_images[component].tag]
        step(f"{prefix} Ready")

    # The chart's mock pool has a warm worker: a container on the node, its renderer loaded.
    def free_mock_slots() -> int | None:
        body: Any = custom.get_namespaced_custom_object(
            GROUP, VERSION, namespace, WORKER_POOL.plural, f"{FULLNAME}-mock"
        )
        return WorkerPool.model_validate(body).status.free_slots or None

    await asyncio.to_thread(
        wait_for, free_mock_slots, timeout=START_TIMEOUT, description="a warm mock worker"
    )
    step("warm mock worker ready")
    steps += pod_steps(ready_pod(api_client, namespace, f"{FULLNAME}-mock-"))

    # A tenant and its key with the admin CLI, as the chart's NOTES have the installer do.
    kubeconfig = control_plane.kubeconfig
    await asyncio.to_thread(
        admin_cli, kubeconfig, namespace, "create-tenant", "acme", "--max-concurrent", "2",
        "--qualities", "mock",
    )  # fmt: skip
    key = await asyncio.to_thread(admin_cli, kubeconfig, namespace, "create-key", "acme")
    avatar_id = new_public_id(AVATAR_PREFIX)
    custom.create_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR.plural, avatar_manifest(avatar_id, "acme")
    )
    room = f"chart-{uuid.uuid4().hex[:8]}"
    viewer = Subscriber(analyse=mock.decode, from_identity=WORKER_IDENTITY)
    await viewer.join(livekit_server, room)
    try:
        async with httpx.AsyncClient(
            base_url=installed.api_url, headers={"x-api-key": key}, timeout=30
        ) as http:
            posted = time.monotonic()
            created = await http.post(
                "/v1/sessions",
                headers={"Idempotency-Key": str(uuid.uuid4())},
                json={
                    "avatar_id": avatar_id,
                    "quality": "mock",
                    "transport": {
                        "type": "livekit",
                        "url": livekit_server.url,
                        "room_name": room,
                        "worker_token": mint_token(livekit_server, WORKER_IDENTITY, room),
                    },
                },
            )
            assert created.status_code == 201, created.text
            session_id = created.json()["id"]
            name = to_resource_name(session_id, SESSION_PREFIX)
            sessions = Sessions(api_client, namespace)

            await wait_for_async(
                lambda: bool(viewer.stamps()),
                within=60,
                description="a mock frame from the worker at the viewer",
            )
            first_frame = viewer.video[0].at - posted
            running = await asyncio.to_thread(sessions.wait_phase, name, "running", 60)
            binding = running.status.binding
            assert binding is not None
            assert binding.pool == f"{FULLNAME}-mock"
            (worker,) = (
                p for p in pods(api_client, namespace) if p["metadata"]["name"] == binding.pod
            )
            assert worker["spec"]["nodeName"] == real_node.name
            assert worker["spec"]["hostNetwork"] is True
            (status,) = worker["status"]["containerStatuses"]
            assert "running" in status["state"], status
            assert status["image"] == real_node.pod_images[node_images["worker"].tag]
            limits = worker["spec"]["containers"][0]["resources"]["limits"]
            assert limits[GPU_RESOURCE] == "1"
            assert real_node.device_plugin is not None
            assert real_node.device_plugin.allocations == [["facecast-gpu-0"]]
            listed = await http.get(f"/v1/sessions/{session_id}")
            assert listed.json()["status"] == "running"

            ended = await http.post(
                f"/v1/sessions/{session_id}/end", headers={"Idempotency-Key": str(uuid.uuid4())}
            )
            assert ended.status_code == 200, ended.text
            final = await asyncio.to_thread(sessions.wait_phase, name, "ended", 60)
            assert final.status.reason == "user_ended"
    except BaseException:
        print(pod_logs(api_client, namespace))
        raise
    finally:
        await viewer.leave()
    frames = [stamp.frame for _, stamp in viewer.stamps()]
    assert len(frames) > 1
    assert frames == sorted(frames), frames[:20]
    print(
        "\nthe chart on the real node:", *steps,
        f"POST /v1/sessions -> first frame at a viewer: {first_frame:.2f} s (warm worker)",
        sep="\n  ",
    )  # fmt: skip
