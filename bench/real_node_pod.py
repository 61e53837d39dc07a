"""Pods on the real node (testbed/real_node.py: the real kubelet on containerd): how long each
step of a pod takes, for the first pod on a fresh node and for the ones after it.

    sudo uv run --frozen --no-sync python bench/real_node_pod.py [--pods 5]

Needs root and a Docker engine (tools/bootstrap.sh ensure_docker, ensure_node_runtime). Starts
the real control plane and a real node, builds the worker image (testbed/images.py; Docker's
layer cache answers it when nothing changed), copies it into the node's containerd (the step a
registry pull would be), then runs the probe pod of tests/node (restricted profile, a Secret and
a projected token mounted, one GPU from the device plugin) `--pods` times, one after another.

Reported: the node's start (containerd, kubelet, Ready with its GPU), the image copy, and per
pod the time from the create request to scheduled, to the container started and to finished,
as first seen through a watch on the API (so each includes the kubelet's status write). The
first pod is cold: the node's first sandbox, and the image's first use. Worker ready and first
frame are not measured yet: the worker needs LiveKit, which pods on this node cannot reach
(their network routes nowhere). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path

from kubernetes import client as k8s

REPO_ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO_ROOT))  # for testbed

from testbed import images  # noqa: E402
from testbed.binaries import testenv_bin_dir  # noqa: E402
from testbed.controlplane import running_control_plane  # noqa: E402
from testbed.node_pods import SECRET_KEY, PodTimings, probe_pod, run_pod  # noqa: E402
from testbed.real_node import running_real_node  # noqa: E402

POD_TIMEOUT = 300.0


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pods", type=int, default=5, help="pods to run, one after another")
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
