"""The built helm lints, renders and installs charts."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from kubernetes import client as k8s

from testbed.binaries import REPO_ROOT
from testbed.controlplane import ControlPlane
from testbed.helm import Helm

FACECAST_CHART = REPO_ROOT / "charts" / "facecast"


def write_tiny_chart(directory: Path) -> Path:
    """A minimal chart: one ConfigMap whose data comes from values."""
    chart = directory / "tiny"
    (chart / "templates").mkdir(parents=True)
    (chart / "Chart.yaml").write_text(
        "apiVersion: v2\nname: tiny\ndescription: testenv check chart\n"
        "type: application\nversion: 0.1.0\nappVersion: '1.0'\n"
    )
    (chart / "values.yaml").write_text("greeting: hello\n")
    (chart / "templates" / "configmap.yaml").write_text(
        "apiVersion: v1\nkind: ConfigMap\nmetadata:\n  name: {{ .Release.Name }}-greeting\n"
        "data:\n  greeting: {{ .Values.greeting | quote }}\n"
    )
    return chart


@pytest.fixture(params=["tiny", "facecast"])
def chart(request: pytest.FixtureRequest, tmp_path: Path) -> Path:
    if request.param == "tiny":
        return write_tiny_chart(tmp_path)
    if not (FACECAST_CHART / "Chart.yaml").exists():
        pytest.skip("charts/facecast has no Chart.yaml yet")
    return FACECAST_CHART


def rendered_documents(helm: Helm, chart: Path) -> list[dict[str, Any]]:
    output = helm.run("template", "check", chart, "--include-crds").stdout
    return [doc for doc in yaml.safe_load_all(output) if doc]


def test_helm_lints_and_renders_the_chart(helm: Helm, chart: Path) -> None:
    lint = helm.run("lint", chart, "--strict")
    assert "0 chart(s) failed" in lint.stdout

    documents = rendered_documents(helm, chart)
    assert documents, "helm template rendered nothing"
    assert all("kind" in doc and "apiVersion" in doc for doc in documents)
    if chart.name == "tiny":
        (configmap,) = documents
        assert configmap["metadata"]["name"] == "check-greeting"
        assert configmap["data"] == {"greeting": "hello"}
    else:
        crd_groups = {
            doc["spec"]["group"] for doc in documents if doc["kind"] == "CustomResourceDefinition"
        }
        # Facecast's own CRDs, and kopf's peering CRD (crds/kopf/) for the operator.
        assert crd_groups == {"facecast.io", "kopf.dev"}


@pytest.mark.controlplane
def test_helm_installs_into_the_control_plane(
    helm: Helm,
    control_plane: ControlPlane,
    api_client: k8s.ApiClient,
    namespace: str,
    tmp_path: Path,
) -> None:
    cluster_helm = helm.with_kubeconfig(control_plane.kubeconfig)
    chart = write_tiny_chart(tmp_path)

    cluster_helm.run(
        "install", "check", chart, "--namespace", namespace, "--set", "greeting=installed", "--wait"
    )
    configmap = k8s.CoreV1Api(api_client).read_namespaced_config_map("check-greeting", namespace)
    assert configmap.data == {"greeting": "installed"}

    releases = yaml.safe_load(
        cluster_helm.run("list", "--namespace", namespace, "-o", "yaml").stdout
    )
    assert [(r["name"], r["status"]) for r in releases] == [("check", "deployed")]
    cluster_helm.run("uninstall", "check", "--namespace", namespace, "--wait")
