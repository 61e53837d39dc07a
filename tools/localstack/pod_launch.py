"""Pure: how a pod bound to the local node becomes a process (argv, environment, the Secret
files and directories to lay out first, the readiness probe to run), or why it cannot."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tools.localstack.kubelet_status import LOCAL_IP
from tools.localstack.readiness import ReadinessProbe, UnsupportedProbeError, readiness_probe

# A container's own /tmp (no volume mounted there) is private to it: here, a directory of the pod.
PRIVATE_TMP = "/tmp"
_LABEL_OR_ANNOTATION = re.compile(r"metadata\.(labels|annotations)\['(.+)'\]")


class UnsupportedPodError(ValueError):
    """The pod asks for something the local runner cannot provide (reported as a failure)."""


@dataclass(frozen=True)
class LaunchPlan:
    """How one container runs here: argv, environment, and the files to lay out first."""

    argv: list[str]
    env: dict[str, str]
    secret_dirs: dict[str, str]  # secret name -> local directory (its mount, materialised)
    secret_items: dict[str, list[tuple[str, str, int]]]  # secret -> (key, path, mode)
    directories: list[str]  # emptyDirs and the private /tmp, made before the process starts
    readiness: ReadinessProbe | None  # None: Ready as soon as it runs


def _local_path(value: str, mounts: Mapping[str, str]) -> str | None:
    """The local path of container path `value` under a mount, or None if under none."""
    for container_path in sorted(mounts, key=len, reverse=True):
        local = mounts[container_path]
        if value == container_path:
            return local
        if value.startswith(container_path.rstrip("/") + "/"):
            return local + value[len(container_path.rstrip("/")) :]
    return None


def _remap(value: str, mounts: Mapping[str, str]) -> str:
    """`value` with a container path under a mount replaced by the local directory."""
    local = _local_path(value, mounts)
    return value if local is None else local


def _field_value(pod: Mapping[str, Any], path: str) -> str:
    """An env `valueFrom.fieldRef`: the downward API fields a kubelet resolves for env."""
    metadata = pod.get("metadata") or {}
    spec = pod.get("spec") or {}
    fields = {
        "metadata.name": metadata.get("name"),
        "metadata.namespace": metadata.get("namespace"),
        "metadata.uid": metadata.get("uid"),
        "spec.nodeName": spec.get("nodeName"),
        "spec.serviceAccountName": spec.get("serviceAccountName"),
        # The local node reports 127.0.0.1 for both (kubelet_status.LOCAL_IP).
        "status.hostIP": LOCAL_IP,
        "status.hostIPs": LOCAL_IP,
        "status.podIP": LOCAL_IP,
        "status.podIPs": LOCAL_IP,
    }
    if path in fields:
        return str(fields[path] or "")
    keyed = _LABEL_OR_ANNOTATION.fullmatch(path)
    if keyed is None:
        raise UnsupportedPodError(f"fieldRef {path} is not a field the downward API offers env")
    return str((metadata.get(keyed.group(1)) or {}).get(keyed.group(2), ""))


def _env_value(
    pod: Mapping[str, Any], variable: Mapping[str, Any], mounts: Mapping[str, str]
) -> str:
    source = variable.get("valueFrom")
    if source is None:
        return _remap(str(variable.get("value", "")), mounts)
    if set(source) != {"fieldRef"}:
        kinds = ", ".join(sorted(source))
        raise UnsupportedPodError(f"env {variable['name']}: valueFrom {kinds} is not supported")
    return _field_value(pod, str(source["fieldRef"]["fieldPath"]))


def plan_launch(
    pod: Mapping[str, Any],
    pod_dir: Path,
    *,
    images: Mapping[str, list[str]],
    default_command: list[str],
    host_paths: Mapping[str, str],
    kubeconfig: Path,
    base_env: Mapping[str, str],
    readiness_file_arg: str | None = None,
) -> LaunchPlan:
    """Pure: the pod's single container as a local process.

    `host_paths` maps container paths to local directories (the avatar store PVC here);
    `kubeconfig` is where the ServiceAccount kubeconfig will be written. The process has no
    filesystem of its own, so a file its readiness probe reads (e.g. `/tmp/x`) is at a local
    path (`<pod /tmp dir>/x`) the process must be told: `readiness_file_arg` is the program's
    option overriding its built-in path (the pool worker's `--ready-file`), added to its
    arguments with that local path.
    """
    spec = pod["spec"]
    containers = spec.get("containers") or []
    if len(containers) != 1 or spec.get("initContainers"):
        raise UnsupportedPodError("the local runner runs pods with exactly one container")
    container = containers[0]
    volumes = {volume["name"]: volume for volume in spec.get("volumes") or []}
    mounts: dict[str, str] = dict(host_paths)
    secret_dirs: dict[str, str] = {}
    secret_items: dict[str, list[tuple[str, str, int]]] = {}
    directories: list[str] = []
    for mount in container.get("volumeMounts") or []:
        volume = volumes.get(mount["name"])
        if volume is None:
            raise UnsupportedPodError(f"volumeMount {mount['name']} has no volume")
        path = mount["mountPath"]
        local = pod_dir / "volumes" / mount["name"]
        if "secret" in volume:
            secret = volume["secret"]
            mode = int(secret.get("defaultMode", 0o644))
            secret_dirs[secret["secretName"]] = str(local)
            secret_items[secret["secretName"]] = [
                (item["key"], item["path"], int(item.get("mode", mode)))
                for item in secret.get("items") or []
            ]
            mounts[path] = str(local)
        elif "emptyDir" in volume:
            mounts[path] = str(local)
            directories.append(str(local))
        elif "projected" in volume:
            mounts[path] = str(local)
        elif "persistentVolumeClaim" in volume or "hostPath" in volume:
            if path not in host_paths:
                raise UnsupportedPodError(f"no local directory for the volume at {path}")
        else:
            raise UnsupportedPodError(f"volume {mount['name']} has an unsupported type")
    if PRIVATE_TMP not in mounts:
        mounts[PRIVATE_TMP] = str(pod_dir / "tmp")
        directories.append(mounts[PRIVATE_TMP])
    try:
        readiness = readiness_probe(container, lambda path: _local_path(path, mounts))
    except UnsupportedProbeError as error:
        raise UnsupportedPodError(str(error)) from error
    env = dict(base_env)
    for variable in container.get("env") or []:
        env[variable["name"]] = _env_value(pod, variable, mounts)
    env["TMPDIR"] = mounts[PRIVATE_TMP]
    env["KUBECONFIG"] = str(kubeconfig)
    env.setdefault("HOME", str(pod_dir / "home"))
    image = str(container.get("image", ""))
    entrypoint = list(container.get("command") or images.get(image) or default_command)
    argv = entrypoint + [str(arg) for arg in container.get("args") or []]
    if readiness is not None and readiness_file_arg:
        argv += [readiness_file_arg, readiness.local_path]
    return LaunchPlan(
        argv=argv,
        env=env,
        secret_dirs=secret_dirs,
        secret_items=secret_items,
        directories=directories,
        readiness=readiness,
    )
