"""The local node's adapter to the API server: registration, Lease and Ready heartbeat, the
watch on the pods bound to it, and one process per pod (started, reported, stopped and
removed as a kubelet does). What runs and what is reported come from pod_launch.py and
kubelet_status.py."""

from __future__ import annotations

import base64
import contextlib
import datetime as dt
import os
import shlex
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kubernetes import client as k8s
from kubernetes import watch as k8s_watch

from tools.localstack.kubeconfigs import write_token_kubeconfig
from tools.localstack.kubelet_status import (
    GPU_RESOURCE,
    LOCAL_IP,
    node_manifest,
    node_status,
    now,
    pod_condition_list,
    stamp,
    termination_message,
)
from tools.localstack.pod_launch import LaunchPlan, UnsupportedPodError, plan_launch
from tools.localstack.readiness import Readiness, ReadinessProbe

LEASE_NAMESPACE = "kube-node-lease"
LEASE_SECONDS = 40
HEARTBEAT_SECONDS = 10.0


@dataclass
class Container:
    """One pod's process and what the runner knows about it."""

    namespace: str
    name: str
    uid: str
    grace_seconds: int
    pod_dir: Path
    process: subprocess.Popen[bytes] | None = None
    started_at: dt.datetime | None = None
    exit_code: int | None = None
    stopping: bool = False
    done: threading.Event = field(default_factory=threading.Event)
    exited: threading.Event = field(default_factory=threading.Event)
    # Held for each status write once the process runs, so that a readiness report never lands
    # after the terminal one.
    status_lock: threading.Lock = field(default_factory=threading.Lock)


class LocalNode:
    def __init__(
        self,
        api: k8s.ApiClient,
        *,
        name: str,
        gpus: int,
        work_dir: Path,
        server: str,
        ca_file: str,
        images: Mapping[str, list[str]],
        default_command: list[str],
        host_paths: Mapping[str, str],
        readiness_file_arg: str | None = None,
    ) -> None:
        self.core = k8s.CoreV1Api(api)
        self.coordination = k8s.CoordinationV1Api(api)
        self.name = name
        self.gpus = gpus
        self.work_dir = work_dir
        self.server = server
        self.ca_file = ca_file
        self.images = images
        self.default_command = default_command
        self.host_paths = host_paths
        self.readiness_file_arg = readiness_file_arg
        self.containers: dict[str, Container] = {}
        self.lock = threading.Lock()
        self.stopped = threading.Event()

    # -- registration and heartbeat

    def register(self) -> None:
        manifest = node_manifest(self.name, self.gpus)
        try:
            self.core.create_node(k8s.V1Node.model_validate(manifest))
        except k8s.ApiException as error:
            if error.status != 409:
                raise
            self.core.patch_node_status(self.name, {"status": manifest["status"]})
        self.renew_lease()
        log(f"node {self.name} registered ({self.gpus} x {GPU_RESOURCE})")

    def renew_lease(self) -> None:
        body = {
            "apiVersion": "coordination.k8s.io/v1",
            "kind": "Lease",
            "metadata": {"name": self.name, "namespace": LEASE_NAMESPACE},
            "spec": {
                "holderIdentity": self.name,
                "leaseDurationSeconds": LEASE_SECONDS,
                "renewTime": dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
            },
        }
        try:
            self.coordination.patch_namespaced_lease(self.name, LEASE_NAMESPACE, body)
        except k8s.ApiException as error:
            if error.status != 404:
                raise
            self.coordination.create_namespaced_lease(
                LEASE_NAMESPACE, k8s.V1Lease.model_validate(body)
            )

    def heartbeat_loop(self) -> None:
        while not self.stopped.wait(HEARTBEAT_SECONDS):
            try:
                self.renew_lease()
                self.core.patch_node_status(self.name, {"status": node_status()})
            except Exception as error:  # the apiserver may be briefly away; try again
                log(f"heartbeat failed: {error!r}")

    # -- pods

    def watch_pods(self) -> None:
        """List, then watch from that version; re-list when the watch expires."""
        selector = f"spec.nodeName={self.name}"
        while not self.stopped.is_set():
            try:
                listing: Any = self.core.list_pod_for_all_namespaces(field_selector=selector)
                seen = set()
                for pod in listing.items:
                    seen.add(pod.metadata.uid)
                    self.sync(pod)
                for uid in set(self.containers) - seen:
                    self.forget(uid)
                stream = k8s_watch.Watch().stream(
                    self.core.list_pod_for_all_namespaces,
                    field_selector=selector,
                    resource_version=listing.metadata.resource_version,
                    timeout_seconds=60,
                    _request_timeout=75,
                )
                for event in stream:
                    if self.stopped.is_set():
                        break
                    pod = event["object"]
                    if event["type"] == "DELETED":
                        self.forget(pod.metadata.uid)
                    elif event["type"] in ("ADDED", "MODIFIED"):
                        self.sync(pod)
            except Exception as error:
                if self.stopped.is_set():
                    break
                log(f"pod watch restarting after {error!r}")
                self.stopped.wait(1.0)

    def sync(self, pod: Any) -> None:
        meta = pod.metadata
        uid = str(meta.uid)
        phase = pod.status.phase if pod.status else None
        with self.lock:
            container = self.containers.get(uid)
            if container is None:
                if phase in ("Succeeded", "Failed"):
                    if meta.deletion_timestamp is not None:
                        self._spawn(self._remove_object, meta.namespace, meta.name, uid)
                    return
                container = Container(
                    namespace=str(meta.namespace),
                    name=str(meta.name),
                    uid=uid,
                    grace_seconds=int(pod.spec.termination_grace_period_seconds or 30),
                    pod_dir=Path(tempfile.mkdtemp(prefix=f"{meta.name}-", dir=self.work_dir)),
                )
                self.containers[uid] = container
                if meta.deletion_timestamp is None:
                    self._spawn(self._run, container, pod)
                else:
                    container.done.set()
            if meta.deletion_timestamp is not None and not container.stopping:
                container.stopping = True
                grace = meta.deletion_grace_period_seconds
                self._spawn(
                    self._delete,
                    container,
                    container.grace_seconds if grace is None else int(grace),
                )

    def forget(self, uid: str) -> None:
        """The pod object is gone (force-deleted, or removed by us): no process may outlive it."""
        with self.lock:
            container = self.containers.pop(uid, None)
        if container is not None and not container.stopping:
            container.stopping = True
            self._spawn(self._stop_process, container, 0)

    def _spawn(self, target: Any, *args: Any) -> None:
        threading.Thread(target=target, args=args, daemon=True).start()

    def _patch_status(self, container: Container, status: dict[str, Any]) -> None:
        try:
            self.core.patch_namespaced_pod_status(
                container.name, container.namespace, {"status": status}
            )
        except k8s.ApiException as error:
            if error.status != 404:
                log(f"pod {container.namespace}/{container.name}: status patch {error.status}")

    def _container_status(
        self, container: Container, pod: Any, state: dict[str, Any], ready: bool
    ) -> dict[str, Any]:
        image = pod.spec.containers[0].image if pod is not None else ""
        name = pod.spec.containers[0].name if pod is not None else "worker"
        pid = container.process.pid if container.process is not None else 0
        return {
            "name": name,
            "image": image,
            "imageID": f"local://{image}",
            "containerID": f"local://{pid}" if pid else None,
            "ready": ready,
            "started": "running" in state,
            "restartCount": 0,
            "state": state,
        }

    def _run(self, container: Container, pod: Any) -> None:
        label = f"{container.namespace}/{container.name}"
        log_file = container.pod_dir / "container.log"
        started = now()
        self._patch_status(
            container,
            {
                "phase": "Pending",
                "hostIP": LOCAL_IP,
                "startTime": stamp(started),
                "conditions": pod_condition_list(False, started),
                "containerStatuses": [
                    self._container_status(
                        container, pod, {"waiting": {"reason": "ContainerCreating"}}, False
                    )
                ],
            },
        )
        try:
            raw = k8s.ApiClient().sanitize_for_serialization(pod)
            plan = plan_launch(
                raw,
                container.pod_dir,
                images=self.images,
                default_command=self.default_command,
                host_paths=self.host_paths,
                kubeconfig=container.pod_dir / "serviceaccount.kubeconfig",
                base_env={
                    "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
                    "LANG": os.environ.get("LANG", "C.UTF-8"),
                    "PYTHONUNBUFFERED": "1",
                },
                readiness_file_arg=self.readiness_file_arg,
            )
            self._materialise(container, pod, plan)
        except Exception as error:
            log(f"pod {label}: cannot start: {error}")
            reason = "CreateContainerConfigError"
            self._patch_status(
                container,
                {
                    "phase": "Failed",
                    "reason": reason,
                    "message": str(error)[:1024],
                    "conditions": pod_condition_list(False, started),
                    "containerStatuses": [
                        self._container_status(
                            container,
                            pod,
                            {"waiting": {"reason": reason, "message": str(error)[:1024]}},
                            False,
                        )
                    ],
                },
            )
            container.done.set()
            return
        with self.lock:
            if container.stopping:
                container.done.set()
                return
            with log_file.open("ab") as out:
                container.process = subprocess.Popen(
                    plan.argv,
                    env=plan.env,
                    cwd=container.pod_dir,
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
        container.started_at = now()
        log(f"pod {label}: started pid {container.process.pid}: {shlex.join(plan.argv)}")
        self._patch_status(
            container,
            {
                "phase": "Running",
                "podIP": LOCAL_IP,
                "podIPs": [{"ip": LOCAL_IP}],
                **self._running_status(container, pod, started, ready=plan.readiness is None),
            },
        )
        if plan.readiness is not None:
            self._spawn(self._probe_readiness, container, pod, started, plan.readiness)
        code = container.process.wait()
        container.exited.set()
        with container.status_lock:
            container.exit_code = code
            self._report_exit(container, pod, container.process.pid, code, started)
        container.done.set()

    def _running_status(
        self, container: Container, pod: Any, started: dt.datetime, *, ready: bool
    ) -> dict[str, Any]:
        running = {"running": {"startedAt": stamp(container.started_at)}}
        return {
            "conditions": pod_condition_list(ready, started),
            "containerStatuses": [self._container_status(container, pod, running, ready)],
        }

    def _probe_readiness(
        self, container: Container, pod: Any, started: dt.datetime, probe: ReadinessProbe
    ) -> None:
        """The kubelet's prober: after the initial delay, one probe per period until the
        process exits; each change of readiness is reported."""
        label = f"{container.namespace}/{container.name}"
        readiness = Readiness(probe)
        if container.exited.wait(probe.initial_delay_s):
            return
        while True:
            if readiness.observe(_cat_succeeds(Path(probe.local_path))):
                with container.status_lock:
                    if container.exit_code is not None:
                        return
                    log(f"pod {label}: ready={readiness.ready} ({probe.container_path})")
                    self._patch_status(
                        container,
                        self._running_status(container, pod, started, ready=readiness.ready),
                    )
            if container.exited.wait(probe.period_s):
                return

    def _report_exit(
        self, container: Container, pod: Any, pid: int, code: int, started: dt.datetime
    ) -> None:
        label = f"{container.namespace}/{container.name}"
        log_file = container.pod_dir / "container.log"
        message_file = container.pod_dir / "termination-log"
        message = termination_message(code, message_file, log_file)
        log(f"pod {label}: exited with code {code}")
        terminated: dict[str, Any] = {
            "exitCode": code,
            "reason": "Completed" if code == 0 else "Error",
            "startedAt": stamp(container.started_at),
            "finishedAt": stamp(),
            "containerID": f"local://{pid}",
        }
        if code < 0:  # killed by a signal: report it as a shell would
            terminated["exitCode"] = 128 - code
            terminated["signal"] = -code
        if message:
            terminated["message"] = message
        self._patch_status(
            container,
            {
                "phase": "Succeeded" if code == 0 else "Failed",
                "conditions": pod_condition_list(False, started),
                "containerStatuses": [
                    self._container_status(container, pod, {"terminated": terminated}, False)
                ],
            },
        )

    def _materialise(self, container: Container, pod: Any, plan: LaunchPlan) -> None:
        """Secret volumes as files, emptyDirs and the private /tmp, and the ServiceAccount
        kubeconfig."""
        for directory in ("volumes", "home"):
            (container.pod_dir / directory).mkdir(exist_ok=True)
        for local in plan.directories:
            Path(local).mkdir(parents=True, exist_ok=True)
        for secret_name, local in plan.secret_dirs.items():
            secret = self.core.read_namespaced_secret(secret_name, container.namespace)
            data = secret.data or {}
            target = Path(local)
            target.mkdir(parents=True, exist_ok=True)
            items = plan.secret_items[secret_name] or [(key, key, 0o440) for key in data]
            for key, path, mode in items:
                if key not in data:
                    raise UnsupportedPodError(f"secret {secret_name} has no key {key}")
                file = target / path
                file.write_bytes(base64.b64decode(data[key]))
                # The process runs as this user, so keep the owner's read bit.
                file.chmod(mode | 0o400)
        token = self._service_account_token(container, pod, None, 3600)
        write_token_kubeconfig(Path(plan.env["KUBECONFIG"]), self.server, self.ca_file, token)
        for volume in pod.spec.volumes or []:
            if volume.projected is not None:
                self._project(container, pod, volume)

    def _service_account_token(
        self, container: Container, pod: Any, audience: str | None, seconds: int
    ) -> str:
        """A token for the pod's ServiceAccount, bound to the pod (TokenRequest, as a kubelet)."""
        request = k8s.AuthenticationV1TokenRequest(
            spec=k8s.V1TokenRequestSpec(
                audiences=[audience] if audience else [],
                expiration_seconds=seconds,
                bound_object_ref=k8s.V1BoundObjectReference(
                    api_version="v1", kind="Pod", name=container.name, uid=container.uid
                ),
            )
        )
        issued: Any = self.core.create_namespaced_service_account_token(
            pod.spec.service_account_name or "default", container.namespace, request
        )
        return str(issued.status.token)

    def _project(self, container: Container, pod: Any, volume: Any) -> None:
        """A projected volume (the kube-api-access one the ServiceAccount admission adds):
        token, ConfigMap items and the downward-API namespace."""
        target = container.pod_dir / "volumes" / volume.name
        target.mkdir(parents=True, exist_ok=True)
        for source in volume.projected.sources or []:
            if source.service_account_token is not None:
                sat = source.service_account_token
                token = self._service_account_token(
                    container, pod, sat.audience, int(sat.expiration_seconds or 3600)
                )
                (target / sat.path).write_text(token)
            elif source.config_map is not None:
                config_map: Any = self.core.read_namespaced_config_map(
                    source.config_map.name, container.namespace
                )
                data = config_map.data or {}
                for item in source.config_map.items or []:
                    (target / item.path).write_text(data.get(item.key, ""))
            elif source.downward_api is not None:
                for item in source.downward_api.items or []:
                    if item.field_ref is not None and item.field_ref.field_path == (
                        "metadata.namespace"
                    ):
                        (target / item.path).write_text(container.namespace)

    def _stop_process(self, container: Container, grace: int) -> None:
        with self.lock:
            process = container.process
        if process is None or process.poll() is not None:
            return
        label = f"{container.namespace}/{container.name}"
        log(f"pod {label}: SIGTERM (grace {grace}s)")
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=max(grace, 0))
        except subprocess.TimeoutExpired:
            log(f"pod {label}: still running after {grace}s, SIGKILL")
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            process.wait()

    def _delete(self, container: Container, grace: int) -> None:
        self._stop_process(container, grace)
        container.done.wait(timeout=30)
        self._remove_object(container.namespace, container.name, container.uid)

    def _remove_object(self, namespace: str, name: str, uid: str) -> None:
        """The kubelet's last word on a deleted pod: remove the object now its process is gone."""
        with contextlib.suppress(k8s.ApiException):
            self.core.delete_namespaced_pod(
                name,
                namespace,
                grace_period_seconds=0,
                body=k8s.V1DeleteOptions(
                    grace_period_seconds=0, preconditions=k8s.V1Preconditions(uid=uid)
                ),
            )

    def shutdown(self) -> None:
        """Stop every container (SIGTERM, grace, SIGKILL) and report them Failed, like a
        kubelet's graceful node shutdown."""
        self.stopped.set()
        with self.lock:
            containers = list(self.containers.values())
        threads = []
        for container in containers:
            if container.process is None or container.process.poll() is not None:
                continue
            thread = threading.Thread(
                target=self._stop_process, args=(container, container.grace_seconds)
            )
            thread.start()
            threads.append(thread)
        for thread in threads:
            thread.join()
        for container in containers:
            container.done.wait(timeout=10)


def _cat_succeeds(path: Path) -> bool:
    """What `cat FILE` in the container would answer: the file exists and can be read."""
    return path.is_file() and os.access(path, os.R_OK)


def log(message: str) -> None:
    print(f"{time.strftime('%H:%M:%S')} runner: {message}", file=sys.stderr, flush=True)
