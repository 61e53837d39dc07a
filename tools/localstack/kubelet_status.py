"""What the local node reports, as a kubelet would: its Node object and status, pod
conditions, and a container's termination message. No API calls here: the node writes
these through its own credentials (local_node.py)."""

from __future__ import annotations

import datetime as dt
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

GPU_RESOURCE = "nvidia.com/gpu"
GPU_PRESENT_LABEL = "nvidia.com/gpu.present"
GPU_TAINT = {"key": GPU_RESOURCE, "value": "present", "effect": "NoSchedule"}
# FallbackToLogsOnError: the last 80 lines, at most 2048 bytes (as the kubelet does).
FALLBACK_LINES = 80
FALLBACK_BYTES = 2048
LOCAL_IP = "127.0.0.1"


def now() -> dt.datetime:
    return dt.datetime.now(dt.UTC).replace(microsecond=0)


def stamp(moment: dt.datetime | None = None) -> str:
    return (moment or now()).strftime("%Y-%m-%dT%H:%M:%SZ")


def pod_condition_list(ready: bool, started: dt.datetime) -> list[dict[str, Any]]:
    status = "True" if ready else "False"
    return [
        {"type": "PodScheduled", "status": "True"},
        {"type": "Initialized", "status": "True", "lastTransitionTime": stamp(started)},
        {"type": "ContainersReady", "status": status, "lastTransitionTime": stamp()},
        {"type": "Ready", "status": status, "lastTransitionTime": stamp()},
    ]


def termination_message(exit_code: int, message_file: Path, log_file: Path) -> str:
    """The container's termination message file, else (on error) its log tail."""
    if message_file.exists():
        text = message_file.read_text(errors="replace").strip()
        if text:
            return text[-4096:]
    if exit_code == 0 or not log_file.exists():
        return ""
    lines = log_file.read_bytes().decode(errors="replace").splitlines()[-FALLBACK_LINES:]
    return "\n".join(lines).encode()[-FALLBACK_BYTES:].decode(errors="replace")


def node_manifest(name: str, gpus: int) -> dict[str, Any]:
    resources = {"cpu": "16", "memory": "64Gi", "pods": "110", GPU_RESOURCE: str(gpus)}
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "labels": {
                GPU_PRESENT_LABEL: "true",
                "type": "local",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "spec": {"taints": [GPU_TAINT]},
        "status": node_status(resources),
    }


def node_status(resources: Mapping[str, str] | None = None) -> dict[str, Any]:
    status: dict[str, Any] = {
        "conditions": [
            {
                "type": "Ready",
                "status": "True",
                "reason": "KubeletReady",
                "message": "local runner is posting ready status",
                "lastHeartbeatTime": stamp(),
            },
            *(
                {"type": kind, "status": "False", "reason": reason, "lastHeartbeatTime": stamp()}
                for kind, reason in (
                    ("MemoryPressure", "KubeletHasSufficientMemory"),
                    ("DiskPressure", "KubeletHasNoDiskPressure"),
                    ("PIDPressure", "KubeletHasSufficientPID"),
                )
            ),
        ],
        "addresses": [{"type": "InternalIP", "address": LOCAL_IP}],
        "nodeInfo": {
            "architecture": "amd64",
            "operatingSystem": "linux",
            "kubeletVersion": "v0.0.0-facecast-local-runner",
            "kubeProxyVersion": "",
            "containerRuntimeVersion": "local://process",
            "kernelVersion": os.uname().release,
            "osImage": "local processes",
            "machineID": "",
            "systemUUID": "",
            "bootID": "",
        },
    }
    if resources is not None:
        status["capacity"] = dict(resources)
        status["allocatable"] = dict(resources)
    return status
