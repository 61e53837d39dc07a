"""Fake GPU nodes, run by kwok: they go Ready, and pods bound to them go Running."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Protocol

from kubernetes import client as k8s

from testbed.controlplane import KWOK_NODE_ANNOTATION, KWOK_NODE_ANNOTATION_VALUE
from testbed.wait import wait_for

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
# The taint the NVIDIA GPU operator's node pools commonly carry: only pods
# that tolerate it (the workers) land on GPU nodes.
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
NODE_READY_TIMEOUT = 60.0


class GpuNodeFactory(Protocol):
    """The `gpu_nodes` fixture: create Ready fake GPU nodes, get their names."""

    def __call__(self, count: int = 1, gpus: int = 1) -> list[str]: ...


def gpu_node(
    name: str, *, gpus: int = 1, cpu: str = "16", memory: str = "64Gi", pods: str = "110"
) -> k8s.V1Node:
    """A Node that kwok manages, with `gpus` allocatable nvidia.com/gpu."""
    resources = {"cpu": cpu, "memory": memory, "pods": pods, GPU_RESOURCE: str(gpus)}
    manifest = {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_NODE_ANNOTATION: KWOK_NODE_ANNOTATION_VALUE},
            "labels": {
                "type": "kwok",
                GPU_PRESENT_LABEL: "true",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"taints": [GPU_TAINT]},
        # Nodes may carry status on create (kubelets register that way); kwok
        # keeps the capacity it finds and only fills in conditions and addresses.
        "status": {"capacity": resources, "allocatable": resources},
    }
    return k8s.V1Node.model_validate(manifest)


def node_is_ready(node: k8s.V1Node) -> bool:
    """Ready=True and none of the not-ready taints the node controller adds at first."""
    conditions = (node.status and node.status.conditions) or []
    ready = any(c.type == "Ready" and c.status == "True" for c in conditions)
    taints = (node.spec and node.spec.taints) or []
    startup_taint = any(t.key.startswith("node.kubernetes.io/") for t in taints)
    return ready and not startup_taint


def create_gpu_nodes(
    api_client: k8s.ApiClient, count: int, *, gpus: int = 1, prefix: str = "kwok-gpu"
) -> list[str]:
    """Create `count` fake GPU nodes and wait until all are Ready; returns their names."""
    core = k8s.CoreV1Api(api_client)
    names = [f"{prefix}-{uuid.uuid4().hex[:8]}" for _ in range(count)]
    for name in names:
        core.create_node(gpu_node(name, gpus=gpus))
    for name in names:

        def ready(name: str = name) -> bool:
            return node_is_ready(core.read_node(name))

        wait_for(
            ready,
            timeout=NODE_READY_TIMEOUT,
            description=f"node {name} to be Ready",
        )
    return names


def delete_nodes(api_client: k8s.ApiClient, names: Sequence[str]) -> None:
    """Delete nodes; their pods are then removed by the pod garbage collector."""
    core = k8s.CoreV1Api(api_client)
    for name in names:
        try:
            core.delete_node(name)
        except k8s.ApiException as error:
            if error.status != 404:
                raise
