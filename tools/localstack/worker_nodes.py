"""Where the local stack's worker pods run: the local node (runner.py, a kubelet stand-in that
runs them as processes of this checkout; the default, needs nothing), or with `--real-node` the
real kubelet on containerd (testbed/real_node.py; needs root and a Docker engine), which runs
them as containers from the worker image built here. Each gives the operator and the pools
what they need to know of it."""

from __future__ import annotations

import contextlib
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from kubernetes import client as k8s

from avatar_crds import contract
from avatar_crds.pool import ImagePullPolicy
from testbed import images
from testbed.binaries import REPO_ROOT
from testbed.controlplane import ControlPlane
from testbed.kwok import node_is_ready
from testbed.process import ManagedProcess
from testbed.real_node import running_real_node
from testbed.wait import wait_for
from tools.localstack.progress import progress
from tools.localstack.runner import NODE_NAME

LOCAL_WORKER_IMAGE = "facecast/worker:local"
# The pool worker's own override of contract.WORKER_READY_FILE (avatar_worker.config.PoolConfig):
# the local node tells it where its readiness probe's file is here.
WORKER_READY_FILE_OPTION = "--ready-file"
AVATAR_STORE_CLAIM = "avatar-store"


@dataclass(frozen=True)
class WorkerNode:
    name: str
    image: str
    image_pull_policy: ImagePullPolicy
    operator_env: dict[str, str]
    """FACECAST_* settings of the operator for worker pods on this node."""
    worker_logs: str
    """Where a person finds the workers' logs."""
    check_alive: Callable[[], None]


@contextlib.contextmanager
def local_node(
    plane: ControlPlane, directory: Path, avatar_store: Path, python_env: Mapping[str, str]
) -> Iterator[WorkerNode]:
    """runner.py as node `local-gpu-0`, with the node's own credentials; it and the workers it
    runs as processes get the stack's `python_env`."""
    node_kubeconfig = plane.kubeconfig_for(
        "node-local-gpu-0", f"system:node:{NODE_NAME}", ("system:nodes",)
    )
    runner = ManagedProcess(
        "runner",
        [sys.executable, "-m", "tools.localstack.runner",
         f"--kubeconfig={node_kubeconfig}", f"--work-dir={directory / 'pods'}",
         f"--image={LOCAL_WORKER_IMAGE}={sys.executable} -m avatar_worker",
         f"--host-path={contract.AVATAR_STORE_DIR}={avatar_store}",
         f"--readiness-file-arg={WORKER_READY_FILE_OPTION}"],
        directory / "logs" / "runner.log", env=python_env, cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        with plane.api_client() as api:
            core = k8s.CoreV1Api(api)

            def ready() -> bool:
                runner.check_alive()
                return node_is_ready(core.read_node(NODE_NAME))

            wait_for(ready, timeout=60, description=f"node {NODE_NAME} Ready")
        yield WorkerNode(
            name=NODE_NAME,
            image=LOCAL_WORKER_IMAGE,
            image_pull_policy="IfNotPresent",
            operator_env={},
            worker_logs=str(directory / "pods"),
            check_alive=runner.check_alive,
        )
    finally:
        runner.stop(60)


@contextlib.contextmanager
def real_node(
    plane: ControlPlane, directory: Path, avatar_store: Path, namespace: str
) -> Iterator[WorkerNode]:
    """The real kubelet on containerd, with the worker image built here (Docker's layer cache
    answers when nothing changed) and imported into containerd (no registry is reachable).

    Its pods have no routed network (testbed/real_node.py), so workers run on the node's
    network and find the API server on loopback (the operator's node network settings, as the
    chart's `hostNetwork` and `kubernetesApi`); the avatar store is a hostPath volume of
    `avatar_store`, claimed in `namespace` as the chart's `avatarStore.claimName` would be."""
    try:
        images.require_engine()
    except images.DockerUnavailableError as error:
        raise images.DockerUnavailableError(
            f"{error} (tools/demo.sh starts one as root; --local-node needs none)"
        ) from error
    progress(
        "building the worker image with Docker (the first time about 5 minutes and 6 GB:"
        " torch; then Docker's layer cache answers in seconds)"
    )
    built = images.build("worker", images.snapshot_context(directory / "image-context"))
    progress(
        f"real node: containerd and the kubelet; {built.tag} ({built.size_bytes / 1e9:.1f} GB)"
        " copied into containerd when it changed (the first time about 2 minutes)"
    )
    with running_real_node(plane, directory / "real-node", gpus=1, images=(built.tag,)) as node:
        with plane.api_client() as api:
            _claim_avatar_store(k8s.CoreV1Api(api), avatar_store, namespace)
        image = node.pod_images[built.tag]
        api_server = urlsplit(plane.server)
        yield WorkerNode(
            name=node.name,
            image=image,
            image_pull_policy="Never",
            operator_env={
                "FACECAST_WORKER_HOST_NETWORK": "true",
                "FACECAST_KUBERNETES_API_HOST": str(api_server.hostname),
                "FACECAST_KUBERNETES_API_PORT": str(api_server.port),
                "FACECAST_WORKER_AVATAR_STORE_CLAIM": AVATAR_STORE_CLAIM,
            },
            worker_logs=f"kubectl -n {namespace} logs <worker pod>",
            check_alive=node.check_alive,
        )


def _claim_avatar_store(core: k8s.CoreV1Api, store: Path, namespace: str) -> None:
    """A PersistentVolume of the store's directory on this node, bound to its claim."""
    volume = f"{namespace}-{AVATAR_STORE_CLAIM}"
    access = ["ReadOnlyMany", "ReadWriteOnce"]
    core.create_persistent_volume(
        {  # type: ignore[arg-type]
            "apiVersion": "v1",
            "kind": "PersistentVolume",
            "metadata": {"name": volume},
            "spec": {
                "capacity": {"storage": "1Gi"},
                "accessModes": access,
                "storageClassName": "",
                "hostPath": {"path": str(store), "type": "Directory"},
            },
        }
    )
    core.create_namespaced_persistent_volume_claim(
        namespace,
        {  # type: ignore[arg-type]
            "apiVersion": "v1",
            "kind": "PersistentVolumeClaim",
            "metadata": {"name": AVATAR_STORE_CLAIM},
            "spec": {
                "accessModes": access,
                "storageClassName": "",
                "volumeName": volume,
                "resources": {"requests": {"storage": "1Gi"}},
            },
        },
    )
