"""Pods on the real node (testbed/real_node.py: the real kubelet on containerd): how long each
step of a pod takes, for the first pod on a fresh node and for the ones after it.

    sudo uv run --frozen --no-sync python bench/real_node_pod.py [--pods 5] [--workers 3]

Needs root and a Docker engine (tools/bootstrap.sh ensure_docker, ensure_node_runtime). Starts
the real control plane and a real node, builds the worker image (testbed/images.py; Docker's
layer cache answers it when nothing changed), copies it into the node's containerd (the step a
registry pull would be), then runs the probe pod of tests/node (restricted profile, a Secret and
a projected token mounted, one GPU from the device plugin) `--pods` times, one after another.

Reported: the node's start (containerd, kubelet, Ready with its GPU), the image copy, and per
pod the time from the create request to scheduled, to the container started and to finished,
as first seen through a watch on the API (so each includes the kubelet's status write). The
first pod is cold: the node's first sandbox, and the image's first use.

Then `--workers` session workers, one after another, each a pod of its own as the operator's
per-session path makes it (the worker image's entry point, the session and avatar files and the
stored portrait from a ConfigMap, the LiveKit token from a Secret, one GPU, lite tier), joining
a room of the real livekit-server on this machine. Pods on this node have no routed network,
so these use the host's (`hostNetwork`, as the issue allows for the media path; the namespace
is therefore not under the restricted profile). Per worker: created -> scheduled -> container
started -> the worker joined the room -> first video frame at a viewer in the room. Each is a
cold start of the worker (a new sandbox, container and process, its renderer loaded); only the
image is warm, the probes having used it. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

from kubernetes import client as k8s

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for testbed

from testbed import images  # noqa: E402
from testbed.binaries import testenv_bin_dir  # noqa: E402
from testbed.controlplane import running_control_plane  # noqa: E402
from testbed.livekit_server import LiveKitServer, running_livekit_server  # noqa: E402
from testbed.node_pods import SECRET_DIR, SECRET_KEY, PodTimings, probe_pod, run_pod  # noqa: E402
from testbed.real_node import running_real_node  # noqa: E402
from testbed.wait import wait_for_async  # noqa: E402

POD_TIMEOUT = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5, help="pods to run, one after another")
    parser.add_argument("--workers", type=int, default=3, help="session worker pods to time")
    arguments = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("the real node needs root")
    images.require_engine()
    with tempfile.TemporaryDirectory(prefix="real-node-bench-") as scratch:
        directory = Path(scratch)
        built = images.build("worker", images.snapshot_context(directory / "context"))
        print(f"worker image {built.tag}: {built.size_bytes / 1e6:.0f} MB")
        with running_control_plane(testenv_bin_dir(), directory / "plane") as plane:
            started = time.monotonic()
            with running_real_node(plane, directory / "node", gpus=1) as node:
                print(f"node start (containerd, kubelet, Ready with 1 GPU): "
                      f"{time.monotonic() - started:.1f} s")  # fmt: skip
                assert node.containerd is not None
                copied = time.monotonic()
                image = node.containerd.import_from_docker(built.tag)
                print(f"image copy into containerd: {time.monotonic() - copied:.1f} s")
                with plane.api_client() as api:
                    timings = run_pods(api, image, arguments.pods)
                    report(timings)
                    if arguments.workers:
                        with running_livekit_server(testenv_bin_dir(), directory / "lk") as lk:
                            asyncio.run(run_workers(api, image, arguments.workers, lk))


def run_pods(api: k8s.ApiClient, image: str, count: int) -> list[PodTimings]:
    core = k8s.CoreV1Api(api)
    namespace = f"bench-{uuid.uuid4().hex[:6]}"
    labels = {"pod-security.kubernetes.io/enforce": "restricted"}
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace, labels=labels)))
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="probe"), string_data={SECRET_KEY: "x"}),
    )
    timings = []
    for index in range(count):
        # One GPU on the node: each pod runs alone, after the previous one has finished.
        pod, timing = run_pod(
            api, namespace, probe_pod(f"probe-{index}", image, "probe"), POD_TIMEOUT
        )
        phase = pod.status.phase if pod.status else None
        assert phase == "Succeeded", f"probe-{index} ended {phase}"
        print(f"pod {index}{' (cold)' if index == 0 else ''}:", *timing.lines(), sep="\n  ")
        timings.append(timing)
        core.delete_namespaced_pod(f"probe-{index}", namespace, grace_period_seconds=0)
    return timings


FILES_DIR = "/etc/facecast/files"
STORE_DIR = "/etc/facecast/store"
WORKER_IDENTITY = "facecast-worker"


def worker_pod(name: str, image: str, files: str, token_secret: str) -> dict[str, Any]:
    """The probe pod's node placement, identity and restrictions, running the worker instead:
    on the host's network, with its files from a ConfigMap and its token from a Secret."""
    pod = probe_pod(name, image, token_secret)
    pod["spec"]["hostNetwork"] = True
    container = pod["spec"]["containers"][0]
    del container["command"]  # the image's entry point: python -m avatar_worker
    container["name"] = "worker"
    container["args"] = [
        *("--session-file", f"{FILES_DIR}/session.json"),
        *("--avatar-file", f"{FILES_DIR}/avatar.json"),
        *("--avatar-store", STORE_DIR),
        *("--token-file", f"{SECRET_DIR}/{SECRET_KEY}"),
        *("--status-file", "-"),
        *("--transport-allowed-cidrs", "127.0.0.1/32"),
    ]
    container["volumeMounts"] += [
        {"name": "files", "mountPath": FILES_DIR, "readOnly": True},
        {"name": "store", "mountPath": STORE_DIR, "readOnly": True},
        {"name": "tmp", "mountPath": "/tmp"},
    ]
    pod["spec"]["volumes"] += [
        {"name": "files", "configMap": {"name": files, "items": [
            {"key": "session.json", "path": "session.json"},
            {"key": "avatar.json", "path": "avatar.json"},
        ]}},
        {"name": "store", "configMap": {"name": files, "items": [
            {"key": "astronaut.jpg", "path": "astronaut.jpg"},
        ]}},
        {"name": "tmp", "emptyDir": {}},
    ]  # fmt: skip
    return pod


def worker_files(
    core: k8s.CoreV1Api, namespace: str, name: str, room: str, lk: LiveKitServer
) -> str:
    """The ConfigMap of one session's files and the Secret of its token; the token's name."""
    from avatar_crds.enums import Quality
    from worker_image.tests.support import mint_token, session_resource, write_worker_files

    session = session_resource(url=lk.url, room=room, quality=Quality.LITE, synthetic=True)
    with tempfile.TemporaryDirectory() as scratch:
        files = write_worker_files(Path(scratch), session, "unused")
        portrait = (files.store / "astronaut.jpg").read_bytes()
        data = {"session.json": files.session.read_text(), "avatar.json": files.avatar.read_text()}
    core.create_namespaced_config_map(
        namespace,
        k8s.V1ConfigMap(
            metadata=k8s.V1ObjectMeta(name=name),
            data=data,
            binary_data={"astronaut.jpg": base64.b64encode(portrait).decode()},
        ),
    )
    token = mint_token(lk, WORKER_IDENTITY, room)
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=name), string_data={SECRET_KEY: token}),
    )
    return name


async def run_workers(api: k8s.ApiClient, image: str, count: int, lk: LiveKitServer) -> None:
    core = k8s.CoreV1Api(api)
    namespace = f"bench-workers-{uuid.uuid4().hex[:6]}"  # host network: not restricted
    core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=namespace)))
    firsts = [await time_worker(api, namespace, index, image, lk) for index in range(count)]
    print(
        f"pod created -> first video frame: median {statistics.median(firsts):.2f} s "
        f"(min {min(firsts):.2f}, max {max(firsts):.2f}) over {count} worker pods"
    )


async def time_worker(
    api: k8s.ApiClient, namespace: str, index: int, image: str, lk: LiveKitServer
) -> float:
    """One worker pod's steps, printed; seconds from its create request to the first frame."""
    from worker_image.tests.support import Subscriber

    core = k8s.CoreV1Api(api)
    room, name = f"bench-room-{index}", f"worker-{index}"
    worker_files(core, namespace, name, room, lk)
    viewer = Subscriber(analyse=lambda _: None, from_identity=WORKER_IDENTITY)
    joined: list[float] = []

    def on_join(participant: Any) -> None:
        if participant.identity == WORKER_IDENTITY:
            joined.append(time.monotonic())

    viewer.room.on("participant_connected", on_join)
    await viewer.join(lk, room)
    created = time.monotonic()
    pod = worker_pod(name, image, name, name)
    watch = asyncio.create_task(
        asyncio.to_thread(run_pod, api, namespace, pod, POD_TIMEOUT, until_started=True)
    )
    try:
        await wait_for_async(
            lambda: bool(viewer.video) or (watch.done() and watch.exception() is not None),
            within=POD_TIMEOUT,
            description=f"a frame from {name}",
        )
        _, timing = await watch
        assert viewer.video, f"{name} sent no frame:\n{pod_log(core, namespace, name)}"
        first_frame = viewer.video[0].at - created
        print(
            f"worker {index}:", *timing.lines(),
            f"pod created -> worker joined the room: {joined[0] - created:.2f} s"
            if joined else "worker joined the room: not seen",
            f"pod created -> first video frame at the viewer: {first_frame:.2f} s",
            sep="\n  ",
        )  # fmt: skip
        return first_frame
    finally:
        await viewer.leave()
        core.delete_namespaced_pod(name, namespace, grace_period_seconds=0)


def pod_log(core: k8s.CoreV1Api, namespace: str, name: str) -> str:
    try:
        log: str = core.read_namespaced_pod_log(name, namespace, tail_lines=30)
        return log
    except k8s.ApiException as exc:
        return f"(no log: {exc.reason})"


def report(timings: list[PodTimings]) -> None:
    if len(timings) < 2:
        return
    warm = timings[1:]
    for step in ("scheduled", "container_started", "finished"):
        values = [getattr(timing, step) for timing in warm]
        print(
            f"{step}: cold {getattr(timings[0], step):.2f} s; warm median "
            f"{statistics.median(values):.2f} s (min {min(values):.2f}, max {max(values):.2f})"
        )


if __name__ == "__main__":
    main()
