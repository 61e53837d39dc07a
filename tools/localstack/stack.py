"""The local stack, started in order and stopped in reverse: control plane, livekit-server, CRDs,
the GPU node for the workers (worker_nodes.py: the real kubelet, or the local node), the warm
WorkerPools (pools.py), the operator, the API, then the demo tenant, avatar and session. The
operator's pool controller starts the pools' workers on the node while the API starts; the stack
is up once each pool has a ready worker."""

from __future__ import annotations

import contextlib
import io
import os
import secrets
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from kubernetes import client as k8s
from livekit import api as lkapi

from avatar_crds import contract
from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from testbed.binaries import REPO_ROOT
from testbed.controlplane import ControlPlane, running_control_plane
from testbed.crds import install_crds
from testbed.livekit_server import LiveKitServer, running_livekit_server
from testbed.operator_process import OperatorProcess
from testbed.probes import http_ok
from testbed.process import LOOPBACK, ManagedProcess, free_port, wait_until_serving
from testbed.tenants import admin_cli
from testbed.wait import wait_for
from tools.localstack import pools, worker_nodes
from tools.localstack.agent import AGENT_IDENTITY
from tools.localstack.progress import progress
from tools.localstack.runner import NODE_NAME

NAMESPACE = "facecast"
TENANT = "demo"
WORKER_IDENTITY = "facecast-worker"
# livekit-server runs on 127.0.0.1 here: the platform's own LiveKit, allowed for the API's check
# at create and for the workers' (through the operator), like an in-cluster LiveKit would be.
LOCAL_LIVEKIT_ALLOWED = {contract.ENV_TRANSPORT_ALLOWED_CIDRS: f"{LOOPBACK}/32"}
POOLS_WARM_TIMEOUT = 120.0


@dataclass
class Stack:
    directory: Path
    plane: ControlPlane
    livekit: LiveKitServer
    api_url: str
    avatar_store: Path
    node: worker_nodes.WorkerNode
    api_key: str = ""
    avatar_id: str = ""

    def worker_token(self, room: str) -> str:
        """What a customer's backend mints for the worker: join, publish, speak for the agent."""
        return (
            lkapi.AccessToken(self.livekit.api_key, self.livekit.api_secret)
            .with_identity(WORKER_IDENTITY)
            .with_name("Facecast avatar")
            .with_attributes({"lk.publish_on_behalf": AGENT_IDENTITY})
            .with_grants(lkapi.VideoGrants(room_join=True, room=room))
            .to_jwt()
        )

    def participant_token(self, room: str, identity: str, *, publish: bool) -> str:
        return (
            lkapi.AccessToken(self.livekit.api_key, self.livekit.api_secret)
            .with_identity(identity)
            .with_grants(
                lkapi.VideoGrants(
                    room_join=True, room=room, can_publish=publish, can_publish_data=publish
                )
            )
            .to_jwt()
        )

    def session_request(self, room: str) -> dict[str, Any]:
        return {
            "avatar_id": self.avatar_id,
            "quality": "lite",
            "transport": {
                "type": "livekit",
                "url": self.livekit.url,
                "room_name": room,
                "worker_token": self.worker_token(room),
                "worker_identity": WORKER_IDENTITY,
                "audio_source": "data_stream",
            },
            "idle_timeout_seconds": 120,
            "metadata": {"source": "tools/demo.sh"},
        }

    def mouth_box(self, width: int, height: int) -> dict[str, float]:
        """Where the avatar's mouth is in a `width`x`height` video frame, by the worker's own
        fit (for the browser test's mouth-region comparison)."""
        from avatar_crds.avatar import Avatar
        from avatar_crds.kinds import AVATAR
        from avatar_crds.meta import GROUP, VERSION
        from avatar_worker.render.portrait import FaceGeometry, fit_transform

        name = self.avatar_id.replace("_", "-").lower()
        with self.plane.api_client() as api:
            raw = k8s.CustomObjectsApi(api).get_namespaced_custom_object(
                GROUP, VERSION, NAMESPACE, AVATAR.plural, name
            )
        spec = Avatar.model_validate(raw).spec
        face = FaceGeometry.from_face(spec.face)
        scale, dx, dy = fit_transform((spec.image.width, spec.image.height), face, (width, height))
        (cx, cy), mouth = face.transformed(scale, dx, dy).mouth_center, face.mouth_width * scale
        return {"x": cx - mouth, "y": cy - mouth * 0.6, "width": 2 * mouth, "height": 1.4 * mouth}

    def headers(self) -> dict[str, str]:
        return {"x-api-key": self.api_key}


def _astronaut_jpeg() -> bytes:
    from PIL import Image
    from skimage import data

    buffer = io.BytesIO()
    photo = data.astronaut()  # type: ignore[no-untyped-call]
    Image.fromarray(photo).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


def _managed_rooms_env(livekit: LiveKitServer, directory: Path) -> dict[str, str]:
    """The API's managed rooms (HeyGen and Kaltura compat) on the stack's own livekit-server.
    The API secret goes in a file only the owner reads, as the chart mounts a Secret: never in
    the environment, which other processes of the user can read."""
    secret_file = directory / "managed-livekit-api-secret"
    descriptor = os.open(secret_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(descriptor, "w") as out:
        out.write(livekit.api_secret)
    return {
        "FACECAST_MANAGED_LIVEKIT_URL": livekit.url,
        "FACECAST_MANAGED_LIVEKIT_API_KEY": livekit.api_key,
        "FACECAST_MANAGED_LIVEKIT_API_SECRET_FILE": str(secret_file),
    }


@contextlib.contextmanager
def running_stack(bin_dir: Path, directory: Path, *, real_node: bool = False) -> Iterator[Stack]:
    """Everything up and the demo tenant and avatar created; all stopped in reverse on exit.
    Worker pods run on the local node, or with `real_node` on the real kubelet (worker_nodes)."""
    with contextlib.ExitStack() as stack:
        progress("control plane: etcd, kube-apiserver, scheduler, controller-manager, kwok")
        plane = stack.enter_context(running_control_plane(bin_dir, directory / "controlplane"))
        progress(f"livekit-server (dev mode) on {LOOPBACK}")
        livekit = stack.enter_context(running_livekit_server(bin_dir, directory / "livekit"))
        progress("CRDs and namespace")
        install_crds(bin_dir / "kubectl", plane.kubeconfig)
        with plane.api_client() as api:
            core = k8s.CoreV1Api(api)
            with contextlib.suppress(k8s.ApiException):
                core.create_namespace(k8s.V1Namespace(metadata=k8s.V1ObjectMeta(name=NAMESPACE)))
        avatar_store = directory / "avatars"
        avatar_store.mkdir(parents=True, exist_ok=True)
        python_env = {**os.environ, "PYTHONUNBUFFERED": "1", "PYTHONPATH": str(REPO_ROOT)}

        if real_node:
            progress("worker pods as containers on the real node (--local-node: as processes)")
            node = stack.enter_context(
                worker_nodes.real_node(plane, directory, avatar_store, NAMESPACE)
            )
        else:
            progress(f"local GPU node {NODE_NAME} (runs worker pods as processes)")
            node = stack.enter_context(
                worker_nodes.local_node(plane, directory, avatar_store, python_env)
            )
        progress(f"worker pools: {', '.join(pools.pool_name(t) for t in pools.POOL_TIERS)}")
        with plane.api_client() as api:
            for tier in pools.POOL_TIERS:
                k8s.CustomObjectsApi(api).create_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, WORKER_POOL.plural,
                    pools.worker_pool(tier, NAMESPACE, node.image, node.image_pull_policy),
                )  # fmt: skip

        progress("operator (python -m avatar_operator)")
        operator = OperatorProcess(
            plane.kubeconfig,
            NAMESPACE,
            directory / "logs",
            env={
                "FACECAST_START_TIMEOUT_SECONDS": "120",
                "FACECAST_HEARTBEAT_TIMEOUT_SECONDS": "30",
                "FACECAST_FINALIZE_TIMEOUT_SECONDS": "30",
                **node.operator_env,
                "FACECAST_WORKER_TERMINATION_GRACE_SECONDS": "15",
                **LOCAL_LIVEKIT_ALLOWED,
            },
        )
        operator.start()
        stack.callback(operator.stop)

        progress("API (python -m api_shim), with managed rooms on the stack's livekit-server")
        port = free_port()
        api_url = f"http://{LOOPBACK}:{port}"
        api_process = ManagedProcess(
            "api",
            [sys.executable, "-m", "api_shim"],
            directory / "logs" / "api.log",
            env={
                **python_env,
                "FACECAST_NAMESPACE": NAMESPACE,
                "FACECAST_KUBECONFIG": str(plane.kubeconfig),
                "FACECAST_HOST": LOOPBACK,
                "FACECAST_PORT": str(port),
                "FACECAST_AVATAR_STORE": str(avatar_store),
                **_managed_rooms_env(livekit, directory),
                **LOCAL_LIVEKIT_ALLOWED,
            },
            cwd=REPO_ROOT,
        )
        stack.callback(api_process.stop)
        wait_until_serving(api_process, lambda: http_ok(f"{api_url}/readyz"), timeout=90)
        progress("waiting for a ready worker in each pool")
        with plane.api_client() as api:
            custom = k8s.CustomObjectsApi(api)

            def pools_warm() -> bool:
                node.check_alive()
                listing: Any = custom.list_namespaced_custom_object(
                    GROUP, VERSION, NAMESPACE, WORKER_POOL.plural
                )
                return pools.warm(listing["items"])

            wait_for(pools_warm, timeout=POOLS_WARM_TIMEOUT, description="warm worker pools")

        result = Stack(directory, plane, livekit, api_url, avatar_store, node)
        progress(f"demo tenant '{TENANT}' and API key (python -m api_shim.admin)")
        installer = plane.kubeconfig
        admin_cli(installer, NAMESPACE, "create-tenant", TENANT, "--max-concurrent", "4",
                  "--qualities", "mock,lite")  # fmt: skip
        result.api_key = admin_cli(installer, NAMESPACE, "create-key", TENANT).splitlines()[-1]

        progress("demo avatar: POST /v1/avatars with skimage.data.astronaut()")
        response = httpx.post(
            f"{api_url}/v1/avatars",
            headers=result.headers(),
            files={"file": ("astronaut.jpg", _astronaut_jpeg(), "image/jpeg")},
            data={"display_name": "Astronaut (scikit-image sample)", "visibility": "tenant"},
            timeout=120,
        )
        if response.status_code != 201:
            raise RuntimeError(f"POST /v1/avatars: {response.status_code} {response.text}")
        result.avatar_id = response.json()["id"]
        yield result


def new_room() -> str:
    return f"demo-{time.strftime('%H%M%S')}-{secrets.token_hex(3)}"
