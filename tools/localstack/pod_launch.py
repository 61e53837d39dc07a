"""Pure: how a pod bound to the local node becomes a process (argv, environment, and the
Secret files to lay out first), or why it cannot."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any


class UnsupportedPodError(ValueError):
    """The pod asks for something the local runner cannot provide (reported as a failure)."""


@dataclass(frozen=True)
class LaunchPlan:
    """How one container runs here: argv, environment, and the files to lay out first."""

    argv: list[str]
    env: dict[str, str]
    secret_dirs: dict[str, str]  # secret name -> local directory (its mount, materialised)
    secret_items: dict[str, list[tuple[str, str, int]]]  # secret -> (key, path, mode)


def _remap(value: str, mounts: Mapping[str, str]) -> str:
    """`value` with a container path under a mount replaced by the local directory."""
    for container_path in sorted(mounts, key=len, reverse=True):
        local = mounts[container_path]
        if value == container_path:
            return local
        if value.startswith(container_path.rstrip("/") + "/"):
            return local + value[len(container_path.rstrip("/")) :]
    return value


def plan_launch(
    pod: Mapping[str, Any],
    pod_dir: Path,
    *,
    images: Mapping[str, list[str]],
    default_command: list[str],
    host_paths: Mapping[str, str],
    kubeconfig: Path,
    base_env: Mapping[str, str],
) -> LaunchPlan:
    """Pure: the pod's single container as a local process.

    `host_paths` maps container paths to local directories (the avatar store PVC here);
    `kubeconfig` is where the ServiceAccount kubeconfig will be written.
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
        elif "emptyDir" in volume or "projected" in volume:
            mounts[path] = str(local)
        elif "persistentVolumeClaim" in volume or "hostPath" in volume:
            if path not in host_paths:
                raise UnsupportedPodError(f"no local directory for the volume at {path}")
        else:
            raise UnsupportedPodError(f"volume {mount['name']} has an unsupported type")
    env = dict(base_env)
    for variable in container.get("env") or []:
        if "valueFrom" in variable:
            raise UnsupportedPodError(f"env {variable['name']}: valueFrom is not supported")
        env[variable["name"]] = _remap(str(variable.get("value", "")), mounts)
    if "/tmp" in mounts:
        env["TMPDIR"] = mounts["/tmp"]
    env["KUBECONFIG"] = str(kubeconfig)
    env.setdefault("HOME", str(pod_dir / "home"))
    image = str(container.get("image", ""))
    entrypoint = list(container.get("command") or images.get(image) or default_command)
    argv = entrypoint + [str(arg) for arg in container.get("args") or []]
    return LaunchPlan(argv=argv, env=env, secret_dirs=secret_dirs, secret_items=secret_items)
