"""Fixtures for the chart tests: the chart's CRDs in the real control plane, a namespace that
enforces the restricted Pod Security Standard, and the chart installed into it with helm."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from kubernetes import client as k8s

from testbed.controlplane import ControlPlane
from testbed.helm import Helm
from testbed.process import free_port
from tests.chart.rendering import CHART, RELEASE, Manifest, install_chart_crds, parse_manifests

PSS_LABELS = {
    f"pod-security.kubernetes.io/{mode}": "restricted" for mode in ("enforce", "warn", "audit")
} | {"pod-security.kubernetes.io/enforce-version": "latest"}


@dataclass(frozen=True)
class Release:
    name: str
    namespace: str
    install_output: str
    manifests: list[Manifest]
    metrics_port: int


@pytest.fixture(scope="session")
def chart_crds(control_plane: ControlPlane, testenv_bin: Path) -> None:
    install_chart_crds(testenv_bin, control_plane.kubeconfig)


@pytest.fixture
def restricted_namespace(namespace: str, api_client: k8s.ApiClient) -> str:
    """The test namespace, labelled so the API server refuses any pod (the chart's, or a
    worker the operator makes) that breaks the restricted Pod Security Standard."""
    k8s.CoreV1Api(api_client).patch_namespace(namespace, {"metadata": {"labels": PSS_LABELS}})
    return namespace


@pytest.fixture
def release(
    chart_crds: None,
    control_plane: ControlPlane,
    helm: Helm,
    restricted_namespace: str,
    request: pytest.FixtureRequest,
) -> Iterator[Release]:
    """`helm install` of the chart with its default values, or those changed by an indirect
    parameter (a list of `--set` items). The operator's metrics port is set to a free one, so
    that the operator can later run locally exactly as rendered."""
    cluster_helm = helm.with_kubeconfig(control_plane.kubeconfig)
    metrics_port = free_port()
    sets: list[str] = [f"operator.metrics.port={metrics_port}", *getattr(request, "param", [])]
    installed = cluster_helm.run(
        "install", RELEASE, CHART, "--namespace", restricted_namespace,
        *[arg for item in sets for arg in ("--set", item)],
    )  # fmt: skip
    manifest = cluster_helm.run("get", "manifest", RELEASE, "--namespace", restricted_namespace)
    yield Release(
        RELEASE,
        restricted_namespace,
        installed.stdout,
        parse_manifests(manifest.stdout),
        metrics_port,
    )
    # Cluster-scoped objects (the ClusterRole and its binding) outlive the namespace.
    cluster_helm.run("uninstall", RELEASE, "--namespace", restricted_namespace, "--wait")
