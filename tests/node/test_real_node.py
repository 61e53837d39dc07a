"""A pod on the real node (the real kubelet on containerd, testbed/real_node.py): scheduled by
the real scheduler for the GPU the device plugin advertises, started by the kubelet from the
worker image under the restricted Pod Security profile, with the Secret and projected
ServiceAccount token the kubelet mounts; what the container saw comes back in the pod's status.
Prints the time from the pod's creation to its container running (timings: bench/)."""

from __future__ import annotations

import hashlib
import secrets
import uuid

import pytest
from kubernetes import client as k8s

from testbed import images
from testbed.device_plugin import VISIBLE_DEVICES_ENV
from testbed.kwok import GPU_RESOURCE
from testbed.node_pods import SECRET_KEY, TOKEN_AUDIENCE, UID, probe_pod, probe_report, run_pod
from testbed.real_node import RealNode
from tests.node.conftest import needs_root

pytestmark = [
    needs_root,
    pytest.mark.real_node,
    pytest.mark.controlplane,
    pytest.mark.images,
    pytest.mark.timeout(2 * images.BUILD_TIMEOUT),
]

POD_TIMEOUT = 180.0
SECCOMP_FILTER = "2"  # /proc/<pid>/status: 0 off, 1 strict, 2 filter


def test_node_registers_with_the_gpu_from_its_device_plugin(
    real_node: RealNode, api_client: k8s.ApiClient
) -> None:
    node = api_client.sanitize_for_serialization(
        k8s.CoreV1Api(api_client).read_node(real_node.name)
    )
    assert node["status"]["nodeInfo"]["containerRuntimeVersion"].startswith("containerd://")
    assert node["status"]["nodeInfo"]["kubeletVersion"].startswith("v1.")
    assert node["status"]["allocatable"][GPU_RESOURCE] == "1"
    assert {(t["key"], t["value"], t["effect"]) for t in node["spec"]["taints"]} >= {
        (GPU_RESOURCE, "present", "NoSchedule")
    }
    assert node["metadata"]["labels"]["nvidia.com/gpu.present"] == "true"


def test_restricted_pod_runs_with_its_mounts_and_gpu(
    real_node: RealNode, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.patch_namespace(
        namespace, {"metadata": {"labels": {"pod-security.kubernetes.io/enforce": "restricted"}}}
    )
    value = secrets.token_urlsafe(24)
    secret_name = "probe-secret"
    core.create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name=secret_name), string_data={SECRET_KEY: value}),
    )
    image = real_node.pod_images[next(iter(real_node.pod_images))]
    manifest = probe_pod(f"probe-{uuid.uuid4().hex[:6]}", image, secret_name)

    pod, timings = run_pod(api_client, namespace, manifest, POD_TIMEOUT)

    assert pod.status is not None
    assert pod.status.phase == "Succeeded", real_node.log_tails()
    assert pod.spec is not None
    assert pod.spec.node_name == real_node.name
    report = probe_report(pod)
    assert (report["uid"], report["gid"]) == (UID, UID)
    assert report["secret_sha256"] == hashlib.sha256(value.encode()).hexdigest()
    assert report["token_subject"] == f"system:serviceaccount:{namespace}:default"
    assert report["token_audience"] == [TOKEN_AUDIENCE]
    # The device plugin's Allocate answer reached the container.
    assert real_node.device_plugin is not None
    assert real_node.device_plugin.allocations == [["facecast-gpu-0"]]
    assert report["visible_devices"] == "facecast-gpu-0", f"{VISIBLE_DEVICES_ENV} in the container"
    assert report["no_new_privs"] == "1"
    assert int(report["effective_capabilities"], 16) == 0
    assert report["seccomp"] == SECCOMP_FILTER
    print("\ncold pod on the real node:", *timings.lines(), sep="\n  ")
