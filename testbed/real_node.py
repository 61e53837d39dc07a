"""A real node for the test control plane: the real kubelet (built from the same Kubernetes
module as the API server, tools/testenv/build.sh) on a real container runtime (testbed/
containerd.py: Debian's containerd, runc and CNI plugins, a pause image built here).

The node registers as system:node:<name> with a client certificate from the plane's CA, and
looks to the scheduler like the kwok GPU nodes and runner.py's stand-in node (label
nvidia.com/gpu.present=true, taint nvidia.com/gpu=present:NoSchedule); nvidia.com/gpu comes
from a device plugin over the kubelet's device-plugin socket (testbed/device_plugin.py, a
stand-in for NVIDIA's: no GPU here).

Needs root (containers, cgroups, mounts, a bridge) and Docker (the images come from Docker's
store). This machine runs cgroup v1, which kubelets since v1.35 refuse unless failCgroupV1 is
false. Everything the node starts is stopped, and what it changed on the host put back
(testbed/node_host.py), by `RealNode.stop()`.
"""

from __future__ import annotations

import contextlib
import os
import socket
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from kubernetes import client as k8s

from testbed import node_host
from testbed.containerd import Containerd, start_containerd
from testbed.controlplane import ControlPlane
from testbed.device_plugin import DEVICE_PLUGIN_DIR, KUBELET_SOCKET, GpuDevicePlugin
from testbed.images import FACECAST_CACHE
from testbed.kwok import GPU_PRESENT_LABEL, GPU_RESOURCE, GPU_TAINT
from testbed.pause_image import pause_image
from testbed.process import LOOPBACK, ComponentDiedError, ManagedProcess, free_port
from testbed.wait import wait_for

NODE_TYPE_LABEL = "type"
NODE_TYPE = "real"  # the kwok GPU nodes say "kwok", runner.py's node "local"
# A subnet nothing else here uses; the bridge has no gateway, so it routes nowhere.
POD_SUBNET = "10.88.77.0/24"
START_TIMEOUT = 180.0
STOP_TIMEOUT = 120.0
# containerd's root (images, snapshots) outlives a run, so a warm run imports nothing: the worker
# image is gigabytes. One real node at a time uses it (the kubelet's socket is machine-wide).
KEPT_ROOT = FACECAST_CACHE / "containerd-root"


def node_labels() -> dict[str, str]:
    return {GPU_PRESENT_LABEL: "true", NODE_TYPE_LABEL: NODE_TYPE}


def kubelet_config(
    *,
    runtime_endpoint: str,
    pki_ca: Path,
    serving_cert: Path,
    serving_key: Path,
    pod_logs_dir: Path,
    cgroup_root: str,
    port: int,
    healthz_port: int,
) -> dict[str, Any]:
    """The KubeletConfiguration: loopback only, x509 + webhook auth, cgroupfs on cgroup v1,
    registered with the GPU taint, eviction thresholds low enough for a shared test disk."""
    return {
        "apiVersion": "kubelet.config.k8s.io/v1beta1",
        "kind": "KubeletConfiguration",
        "address": LOOPBACK,
        "port": port,
        "readOnlyPort": 0,
        "healthzBindAddress": LOOPBACK,
        "healthzPort": healthz_port,
        "tlsCertFile": str(serving_cert),
        "tlsPrivateKeyFile": str(serving_key),
        "authentication": {
            "anonymous": {"enabled": False},
            "webhook": {"enabled": True},
            "x509": {"clientCAFile": str(pki_ca)},
        },
        "authorization": {"mode": "Webhook"},
        "containerRuntimeEndpoint": runtime_endpoint,
        "cgroupDriver": "cgroupfs",
        "cgroupRoot": f"/{cgroup_root}",
        # This machine has cgroup v1 only; v1.35 kubelets refuse it by default.
        "failCgroupV1": False,
        "failSwapOn": False,
        "podLogsDir": str(pod_logs_dir),
        "registerWithTaints": [GPU_TAINT],
        "evictionHard": {
            "memory.available": "100Mi",
            "nodefs.available": "1%",
            "imagefs.available": "1%",
        },
        # The images come from Docker's store, imported; nothing may garbage-collect them.
        "imageGCHighThresholdPercent": 100,
        "imageGCLowThresholdPercent": 99,
        # Pod status reaches the API as soon as it changes (the default batches for 10 s).
        "nodeStatusUpdateFrequency": "4s",
        "syncFrequency": "10s",
        # Pods get no resolver: their network routes nowhere (testbed/containerd.py).
        "resolvConf": "",
    }


@dataclass
class RealNode:
    """A running node; `name` is its Node object's name, `pod_images` the CRI names of the
    images imported for pods, by Docker tag."""

    name: str
    directory: Path
    plane: ControlPlane
    containerd: Containerd | None = None
    kubelet: ManagedProcess | None = None
    device_plugin: GpuDevicePlugin | None = None
    pod_images: dict[str, str] = field(default_factory=dict)
    host: node_host.HostSnapshot = field(default_factory=node_host.HostSnapshot)
    cgroup_root: str = ""
    bridge: str = ""

    def check_alive(self) -> None:
        for process in (self.containerd.process if self.containerd else None, self.kubelet):
            if process is not None:
                process.check_alive()

    def log_tails(self, lines: int = 30) -> str:
        parts = []
        for process in (self.containerd.process if self.containerd else None, self.kubelet):
            if process is not None:
                parts.append(f"----- {process.name} {process.log_path}\n{process.log_tail(lines)}")
        return "\n".join(parts)

    def stop(self) -> list[str]:
        """Stop everything and put the host back; the problems met (empty when clean)."""
        problems: list[str] = []
        if self.kubelet is not None and self.kubelet.alive:
            problems += _drain(self)
        if self.device_plugin is not None:
            self.device_plugin.stop()
        if self.kubelet is not None:
            self.kubelet.stop(timeout=30)
        problems += _delete_node_object(self)
        if self.containerd is not None:
            if self.containerd.process.alive:
                try:
                    self.containerd.remove_all_containers()
                except RuntimeError as error:
                    problems.append(str(error))
            self.containerd.stop()
        problems += node_host.unmount_all_under(self.directory)
        if self.bridge:
            node_host.delete_link(self.bridge)
        if self.cgroup_root:
            problems += node_host.remove_cgroup_tree(self.cgroup_root)
        problems += self.host.restore()
        return problems


def _drain(node: RealNode) -> list[str]:
    """Delete the node's pods and wait until the kubelet has torn them down, so the runtime
    is empty before it stops: a graceful delete (not grace 0, which removes the object at once)
    leaves each pod in the API until the kubelet has stopped its containers and confirms."""
    with node.plane.api_client() as api:
        core = k8s.CoreV1Api(api)
        selector = f"spec.nodeName={node.name}"
        for pod in core.list_pod_for_all_namespaces(field_selector=selector).items:
            meta = pod.metadata
            if meta is None or meta.name is None or meta.namespace is None:
                continue
            with contextlib.suppress(k8s.ApiException):
                core.delete_namespaced_pod(meta.name, meta.namespace, grace_period_seconds=1)
        try:
            wait_for(
                lambda: not core.list_pod_for_all_namespaces(field_selector=selector).items,
                timeout=STOP_TIMEOUT,
                description=f"the pods on {node.name} to be gone",
            )
        except AssertionError as error:
            return [str(error)]
    return []


def _delete_node_object(node: RealNode) -> list[str]:
    """The Node object goes with the kubelet, so that later tests see no NotReady node."""
    with node.plane.api_client() as api:
        try:
            k8s.CoreV1Api(api).delete_node(node.name)
        except k8s.ApiException as error:
            if error.status != 404:
                return [f"deleting node {node.name}: {error.status} {error.reason}"]
    return []


def _import_images(node: RealNode, docker_tags: tuple[str, ...]) -> None:
    assert node.containerd is not None
    for tag in docker_tags:
        node.pod_images[tag] = node.containerd.import_from_docker(tag)


def _start_kubelet(node: RealNode) -> None:
    assert node.containerd is not None
    plane = node.plane
    kubeconfig = plane.kubeconfig_for(
        f"kubelet-{node.name}", f"system:node:{node.name}", ("system:nodes",)
    )
    root_dir = node.directory / "kubelet"
    config = kubelet_config(
        runtime_endpoint=node.containerd.endpoint,
        pki_ca=plane.pki.ca.cert,
        serving_cert=plane.pki.serving.cert,
        serving_key=plane.pki.serving.key,
        pod_logs_dir=node.directory / "pod-logs",
        cgroup_root=node.cgroup_root,
        port=free_port(),
        healthz_port=free_port(),
    )
    config_path = node.directory / "kubelet-config.yaml"
    config_path.write_text(yaml.safe_dump(config, sort_keys=False))
    labels = ",".join(f"{key}={value}" for key, value in node_labels().items())
    node.kubelet = ManagedProcess(
        "kubelet",
        [
            plane.bin_dir / "kubelet",
            f"--config={config_path}",
            f"--kubeconfig={kubeconfig}",
            f"--root-dir={root_dir}",
            f"--cert-dir={root_dir / 'pki'}",
            f"--hostname-override={node.name}",
            f"--node-labels={labels}",
            "--v=2",
        ],
        node.directory / "kubelet.log",
        env={"HOME": str(node.directory), "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
    )


def _node(node: RealNode) -> k8s.V1Node | None:
    node.check_alive()
    with node.plane.api_client() as api:
        try:
            found: k8s.V1Node = k8s.CoreV1Api(api).read_node(node.name)
        except k8s.ApiException as error:
            if error.status == 404:
                return None
            raise
        return found


def node_ready(found: k8s.V1Node | None) -> bool:
    conditions = (found.status.conditions if found and found.status else None) or []
    return any(c.type == "Ready" and c.status == "True" for c in conditions)


def allocatable_gpus(found: k8s.V1Node | None) -> int:
    allocatable = (found.status.allocatable if found and found.status else None) or {}
    return int(allocatable.get(GPU_RESOURCE, "0"))


def _socket_answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
        try:
            probe.connect(str(path))
        except OSError:
            return False
    return True


def start_real_node(
    plane: ControlPlane, directory: Path, gpus: int = 1, images: tuple[str, ...] = ()
) -> RealNode:
    """Start containerd and the kubelet, register the GPUs, wait for a Ready node with them.

    `images` are Docker tags imported into containerd for pods (imagePullPolicy Never: no
    registry is reachable). Stops what it started if any step fails."""
    suffix = uuid.uuid4().hex[:8]
    node = RealNode(
        name=f"real-node-{suffix}",
        directory=directory,
        plane=plane,
        host=node_host.HostSnapshot.take(),
        cgroup_root=f"facecast-{suffix}",
        bridge=f"fcnode{suffix[:6]}",
    )
    if not (plane.bin_dir / "kubelet").exists():
        raise FileNotFoundError(f"no kubelet in {plane.bin_dir}: run tools/testenv/build.sh")
    if _socket_answers(KUBELET_SOCKET):
        raise RuntimeError(f"{KUBELET_SOCKET} answers: another kubelet runs on this machine")
    # Left by a run that was killed: the new kubelet would only replace it, but waiting for the
    # socket below must see the new one.
    KUBELET_SOCKET.unlink(missing_ok=True)
    try:
        sandbox_image = pause_image()
        node.containerd = start_containerd(
            directory / "containerd", sandbox_image, node.bridge, POD_SUBNET, KEPT_ROOT
        )
        node.containerd.import_from_docker(sandbox_image)
        _import_images(node, images)
        node_host.create_cgroup_root(node.cgroup_root)
        _start_kubelet(node)
        wait_for(
            lambda: node_ready(_node(node)),
            timeout=START_TIMEOUT,
            description=f"node {node.name} to be Ready",
            fatal=(ComponentDiedError,),
        )
        wait_for(
            KUBELET_SOCKET.exists,
            timeout=START_TIMEOUT,
            description=f"the kubelet's device-plugin socket in {DEVICE_PLUGIN_DIR}",
        )
        node.device_plugin = GpuDevicePlugin(GPU_RESOURCE, gpus, f"facecast-gpu-{suffix}.sock")
        node.device_plugin.start()
        wait_for(
            lambda: allocatable_gpus(_node(node)) == gpus,
            timeout=START_TIMEOUT,
            description=f"{gpus} {GPU_RESOURCE} allocatable on {node.name}",
            fatal=(ComponentDiedError,),
        )
    except BaseException:
        node.stop()
        raise
    return node


@contextlib.contextmanager
def running_real_node(
    plane: ControlPlane, directory: Path, gpus: int = 1, images: tuple[str, ...] = ()
) -> Iterator[RealNode]:
    node = start_real_node(plane, directory, gpus, images)
    try:
        yield node
    finally:
        problems = node.stop()
        if problems:
            raise RuntimeError(f"the real node left things behind: {problems}")
