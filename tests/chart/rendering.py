"""Render charts/facecast with the built helm and read the manifests it produces."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import yaml

from avatar_crds.pool import WorkerPool
from avatar_operator import pool_objects
from avatar_operator.settings import load_settings
from testbed.binaries import REPO_ROOT
from testbed.helm import Helm

CHART = REPO_ROOT / "charts" / "facecast"
VALUES_EXAMPLES = {
    "default": None,
    "production": CHART / "values-production.yaml",
    "kind": CHART / "values-kind.yaml",
}
RELEASE = "fc"
FULLNAME = f"{RELEASE}-facecast"
OPERATOR = f"{FULLNAME}-operator"
API = f"{FULLNAME}-api"

Manifest = dict[str, Any]


def _merge(base: dict[str, Any], override: dict[str, Any]) -> dict[str, Any]:
    """Helm's coalescing: maps merge key by key, anything else is replaced."""
    merged = dict(base)
    for key, value in override.items():
        if isinstance(value, dict) and isinstance(base.get(key), dict):
            merged[key] = _merge(base[key], value)
        else:
            merged[key] = value
    return merged


def merged_values(example: str) -> dict[str, Any]:
    """The values a values example installs with: values.yaml, overridden by the example."""
    values: dict[str, Any] = yaml.safe_load((CHART / "values.yaml").read_text())
    override = VALUES_EXAMPLES[example]
    return _merge(values, yaml.safe_load(override.read_text())) if override else values


def template_args(
    namespace: str,
    values: Path | None = None,
    sets: Sequence[str] = (),
    set_jsons: Sequence[str] = (),
) -> list[str | Path]:
    args: list[str | Path] = ["template", RELEASE, CHART, "--namespace", namespace]
    if values is not None:
        args += ["--values", values]
    for item in sets:
        args += ["--set", item]
    for item in set_jsons:
        args += ["--set-json", item]
    return args


def render(
    helm: Helm,
    namespace: str = "facecast",
    values: Path | None = None,
    sets: Sequence[str] = (),
    set_jsons: Sequence[str] = (),
) -> list[Manifest]:
    output = helm.run(*template_args(namespace, values, sets, set_jsons)).stdout
    return parse_manifests(output)


def parse_manifests(text: str) -> list[Manifest]:
    return [doc for doc in yaml.safe_load_all(text) if doc]


def of_kind(docs: Sequence[Manifest], kind: str) -> list[Manifest]:
    return [doc for doc in docs if doc["kind"] == kind]


def one(docs: Sequence[Manifest], kind: str, name: str) -> Manifest:
    found = [doc for doc in of_kind(docs, kind) if doc["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind} {name}, found {len(found)}"
    return found[0]


def container(deployment: Manifest) -> dict[str, Any]:
    (only,) = deployment["spec"]["template"]["spec"]["containers"]
    result: dict[str, Any] = only
    return result


def literal_env(container_spec: dict[str, Any]) -> dict[str, str]:
    """The container's environment; every entry must be a literal (no valueFrom), so that a
    local process can be given exactly what the pod would get."""
    env: dict[str, str] = {}
    for entry in container_spec.get("env", []):
        assert set(entry) == {"name", "value"}, f"not a literal env entry: {entry}"
        env[entry["name"]] = entry["value"]
    return env


def worker_pods(docs: Sequence[Manifest]) -> list[Manifest]:
    """A worker of every WorkerPool the chart renders, as the operator's pool controller would
    make it (`pool_objects.worker_pod`) under the settings the rendered operator env gives:
    every kind of worker pod the install runs."""
    settings = load_settings(literal_env(container(one(docs, "Deployment", OPERATOR)))).worker
    pods: list[Manifest] = []
    for doc in of_kind(docs, "WorkerPool"):
        name = doc["metadata"]["name"]
        pool = WorkerPool.model_validate(
            {**doc, "metadata": {**doc["metadata"], "uid": f"uid-{name}"}}
        )
        pods.append(pool_objects.worker_pod(pool, f"{name}-worker-x7k2p", settings))
    assert pods, "the chart renders no WorkerPool"
    return pods


def worker_env(pod: Manifest) -> dict[str, str]:
    """The worker container's environment as the kubelet gives it: the literal values, and the
    pod's own name (which the API server makes from its generateName) where an entry asks for
    it. Any other reference fails: the worker could not be run from the env alone."""
    name = f"{pod['metadata']['generateName']}abcde"
    env: dict[str, str] = {}
    for entry in pod["spec"]["containers"][0]["env"]:
        if "value" in entry:
            env[entry["name"]] = entry["value"]
        else:
            assert entry["valueFrom"] == {"fieldRef": {"fieldPath": "metadata.name"}}, entry
            env[entry["name"]] = name
    return env


def pod_templates(docs: Sequence[Manifest]) -> Iterator[tuple[str, dict[str, Any]]]:
    for doc in docs:
        if doc["kind"] in ("Deployment", "StatefulSet", "DaemonSet", "Job"):
            yield doc["metadata"]["name"], doc["spec"]["template"]


def kubectl(
    testenv_bin: Path, kubeconfig: Path, *args: str | Path, check: bool = True
) -> subprocess.CompletedProcess[str]:
    command = [str(testenv_bin / "kubectl"), f"--kubeconfig={kubeconfig}", *map(str, args)]
    done = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    if check and done.returncode != 0:
        raise AssertionError(
            f"{' '.join(command)} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        )
    return done


def install_chart_crds(testenv_bin: Path, kubeconfig: Path) -> None:
    """The chart's crds/ (Facecast's generated CRDs and kopf's peering CRD), as helm would
    install them, applied and Established."""
    crds = CHART / "crds"
    kubectl(testenv_bin, kubeconfig, "apply", "--server-side", "-R", "-f", crds)
    kubectl(
        testenv_bin, kubeconfig, "wait", "--for=condition=Established", "--timeout=60s",
        "-R", "-f", crds,
    )  # fmt: skip


def to_json_arg(path: str, value: Any) -> str:
    """A `--set-json` argument."""
    return f"{path}={json.dumps(value)}"
