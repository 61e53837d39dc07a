"""A pod that reports, from inside a container on a real node, what the node gave it: the
identity it runs as, its Secret and projected ServiceAccount token mounts, the GPU the device
plugin allocated, the restrictions it runs under. It writes that (no secret values: digests
and token claims only) to its termination message, which the kubelet puts in the pod's status.

Also the timing of a pod's steps as the kubelet reports them: created, scheduled, container
started, finished, watched from the API."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch

from testbed.kwok import GPU_PRESENT_LABEL, GPU_RESOURCE, GPU_TAINT

SECRET_DIR = "/etc/facecast-secret"
SECRET_KEY = "value"
TOKEN_DIR = "/var/run/secrets/facecast"
TOKEN_AUDIENCE = "facecast-real-node"
UID = 10001  # the images' USER

# Runs in the image's own python3; reads what the kubelet mounted and set up.
PROBE = f"""
import base64, hashlib, json, os
payload = open("{TOKEN_DIR}/token").read().split(".")[1]
claims = json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))
status = dict(
    line.split(":", 1) for line in open("/proc/self/status").read().splitlines() if ":" in line
)
secret = open("{SECRET_DIR}/{SECRET_KEY}", "rb").read()
report = {{
    "uid": os.getuid(),
    "gid": os.getgid(),
    "secret_sha256": hashlib.sha256(secret).hexdigest(),
    "token_subject": claims["sub"],
    "token_audience": claims["aud"],
    "visible_devices": os.environ.get("NVIDIA_VISIBLE_DEVICES"),
    "no_new_privs": status["NoNewPrivs"].strip(),
    "effective_capabilities": status["CapEff"].strip(),
    "seccomp": status["Seccomp"].strip(),
}}
open("/dev/termination-log", "w").write(json.dumps(report))
"""


def probe_pod(name: str, image: str, secret_name: str, gpus: int = 1) -> dict[str, Any]:
    """The pod, meeting the restricted Pod Security profile, for the GPU node."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            "restartPolicy": "Never",
            # No cluster DNS here (and no resolver: the pod network routes nowhere); Default
            # spares the kubelet's ClusterFirst fallback and its warning Event.
            "dnsPolicy": "Default",
            "nodeSelector": {GPU_PRESENT_LABEL: "true"},
            "tolerations": [{**GPU_TAINT, "operator": "Equal"}],
            "automountServiceAccountToken": False,
            "securityContext": {
                "runAsNonRoot": True,
                "runAsUser": UID,
                "runAsGroup": UID,
                "seccompProfile": {"type": "RuntimeDefault"},
            },
            "containers": [
                {
                    "name": "probe",
                    "image": image,
                    # Imported into the node's containerd: no registry is reachable.
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", PROBE],
                    "resources": {"limits": {GPU_RESOURCE: str(gpus)}},
                    "securityContext": {
                        "allowPrivilegeEscalation": False,
                        "readOnlyRootFilesystem": True,
                        "capabilities": {"drop": ["ALL"]},
                    },
                    "volumeMounts": [
                        {"name": "secret", "mountPath": SECRET_DIR, "readOnly": True},
                        {"name": "token", "mountPath": TOKEN_DIR, "readOnly": True},
                    ],
                }
            ],
            "volumes": [
                {"name": "secret", "secret": {"secretName": secret_name}},
                {
                    "name": "token",
                    "projected": {
                        "sources": [
                            {
                                "serviceAccountToken": {
                                    "path": "token",
                                    "audience": TOKEN_AUDIENCE,
                                    "expirationSeconds": 600,
                                }
                            }
                        ]
                    },
                },
            ],
        },
    }


def probe_report(pod: k8s.V1Pod) -> dict[str, Any]:
    """The probe's report from the pod's status (its termination message)."""
    statuses = (pod.status.container_statuses if pod.status else None) or []
    for status in statuses:
        terminated = status.state.terminated if status.state else None
        if terminated is not None and terminated.message:
            report: dict[str, Any] = json.loads(terminated.message)
            return report
    raise LookupError(f"no termination message in {statuses}")


@dataclass(frozen=True)
class PodTimings:
    """Seconds from the create request to each step, as first seen through a watch."""

    scheduled: float
    container_started: float
    finished: float | None  # None: watched only until the container started

    def lines(self) -> list[str]:
        lines = [
            f"pod created -> scheduled: {self.scheduled:.2f} s",
            f"pod created -> container started (kubelet): {self.container_started:.2f} s",
        ]
        if self.finished is not None:
            lines.append(f"pod created -> finished (Succeeded or Failed): {self.finished:.2f} s")
        return lines


def _container_started(pod: k8s.V1Pod) -> bool:
    for status in (pod.status.container_statuses if pod.status else None) or []:
        if status.state and (status.state.running or status.state.terminated):
            return True
    return False


def run_pod(
    api: k8s.ApiClient,
    namespace: str,
    manifest: dict[str, Any],
    timeout: float,
    *,
    until_started: bool = False,
) -> tuple[k8s.V1Pod, PodTimings]:
    """Create the pod and watch it to the end (Succeeded or Failed), or with `until_started`
    until its container has started; its last state, timings."""
    core = k8s.CoreV1Api(api)
    name = manifest["metadata"]["name"]
    started = time.monotonic()
    created = core.create_namespaced_pod(namespace, manifest)  # type: ignore[arg-type]
    seen: dict[str, float] = {}
    deadline = started + timeout
    version = created.metadata.resource_version if created.metadata else None
    stream = watch.Watch()
    pod: k8s.V1Pod = created
    while time.monotonic() < deadline:
        for event in stream.stream(
            core.list_namespaced_pod,
            namespace,
            field_selector=f"metadata.name={name}",
            resource_version=version,
            timeout_seconds=max(1, int(deadline - time.monotonic())),
        ):
            pod = event["object"]
            version = pod.metadata.resource_version if pod.metadata else version
            now = time.monotonic() - started
            if pod.spec and pod.spec.node_name:
                seen.setdefault("scheduled", now)
            if _container_started(pod):
                seen.setdefault("container_started", now)
                if until_started:
                    stream.stop()
                    return pod, PodTimings(seen.get("scheduled", now), now, None)
            if pod.status and pod.status.phase in ("Succeeded", "Failed"):
                seen.setdefault("finished", now)
                stream.stop()
                return pod, PodTimings(
                    seen.get("scheduled", now), seen.get("container_started", now), now
                )
    raise AssertionError(
        f"pod {namespace}/{name} did not {'start' if until_started else 'finish'} within "
        f"{timeout:.0f} s: {pod.status}"
    )
