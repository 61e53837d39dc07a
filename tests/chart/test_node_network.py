"""`hostNetwork` and `kubernetesApi` (for a node with no pod network to LiveKit and the API
server, and no kube-proxy) reach the operator's and the API's pods and, through the operator's
settings, the worker pod of every pool it runs; by default none of it."""

from __future__ import annotations

from typing import Any

from testbed.helm import Helm
from tests.chart.rendering import API, OPERATOR, one, render, worker_pods

NODE_NETWORK = ("hostNetwork=true", "kubernetesApi.host=127.0.0.1", "kubernetesApi.port=6443")
API_SERVER_ENV = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}


def api_server_env(spec: dict[str, Any]) -> dict[str, str]:
    env = {item["name"]: item.get("value") for item in spec["containers"][0]["env"]}
    return {name: env[name] for name in API_SERVER_ENV if name in env}


def test_every_pod_runs_on_its_nodes_network_and_finds_the_api_server_there(helm: Helm) -> None:
    docs = render(helm, sets=NODE_NETWORK)
    specs = [one(docs, "Deployment", name)["spec"]["template"]["spec"] for name in (OPERATOR, API)]
    specs += [pod["spec"] for pod in worker_pods(docs)]
    for spec in specs:
        assert spec["hostNetwork"] is True
        assert api_server_env(spec) == API_SERVER_ENV


def test_by_default_pods_use_the_pod_network_and_the_kubernetes_service(helm: Helm) -> None:
    docs = render(helm)
    specs = [one(docs, "Deployment", name)["spec"]["template"]["spec"] for name in (OPERATOR, API)]
    specs += [pod["spec"] for pod in worker_pods(docs)]
    for spec in specs:
        assert "hostNetwork" not in spec
        assert api_server_env(spec) == {}
