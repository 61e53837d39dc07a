"""Run a chart container as a local process: no kubelet runs images here, so the operator and
the API run from this checkout's environment with exactly the command, arguments and
environment of their rendered pod (the image's ENV, then the container's env), authenticated
with a token of the pod's ServiceAccount."""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from testbed.process import ManagedProcess
from tests.chart.dockerfiles import parse
from tests.chart.rendering import Manifest, container, literal_env


def image_env(dockerfile: Path) -> dict[str, str]:
    """The final stage's ENV, with PATH pointing at this environment's interpreter instead
    of the image's /opt/venv/bin (the only part of it that cannot be the same here)."""
    env = parse(dockerfile)[-1].env()
    assert env["PATH"].startswith("/opt/venv/bin:"), env["PATH"]
    env["PATH"] = f"{Path(sys.executable).parent}:{os.environ.get('PATH', '/usr/bin:/bin')}"
    return env


def pod_command(deployment: Manifest) -> list[str]:
    spec = container(deployment)
    return [*spec["command"], *spec.get("args", [])]


def start_container(
    name: str,
    deployment: Manifest,
    dockerfile: Path,
    kubeconfig: Path,
    workdir: Path,
    *,
    args: list[str] | None = None,
    env_overrides: Mapping[str, str] = {},
) -> ManagedProcess:
    """`args` replaces the command line (after the caller substituted what it must); the
    environment is the image's, then the pod's, then KUBECONFIG and `env_overrides`."""
    pod_env = literal_env(container(deployment))
    unknown = set(env_overrides) - set(pod_env)
    assert not unknown, f"overrides for variables the pod does not set: {unknown}"
    env: dict[str, str] = {
        **image_env(dockerfile),
        **pod_env,
        **env_overrides,
        "KUBECONFIG": str(kubeconfig),
    }
    command = args if args is not None else pod_command(deployment)
    # Run from an empty directory, as in the image: nothing is imported from the checkout's cwd.
    return ManagedProcess(name, command, workdir / f"{name}.log", env=env, cwd=workdir)
