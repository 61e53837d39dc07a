"""`hostNetwork` and `kubernetesApi` (for a node with no pod network to LiveKit and the API
server, and no kube-proxy) reach the operator's and the API's pods and, through the operator's
settings, every worker pod it makes, a pool's or a session's own; by default none of it."""

from __future__ import annotations

from typing import Any

from avatar_crds.pool import WorkerPool
from avatar_crds.session import AvatarSession
from avatar_operator import pool_objects, resources
from avatar_operator.settings import load_settings
from testbed.helm import Helm
from testbed.objects import session_manifest
from tests.chart.rendering import (
    API,
    OPERATOR,
    Manifest,
    container,
    literal_env,
    of_kind,
    one,
    render,
)

NODE_NETWORK = ("hostNetwork=true", "kubernetesApi.host=127.0.0.1", "kubernetesApi.port=6443")
API_SERVER_ENV = {"KUBERNETES_SERVICE_HOST": "127.0.0.1", "KUBERNETES_SERVICE_PORT": "6443"}


def worker_pods(docs: list[Manifest]) -> list[dict[str, Any]]:
    """A session's own worker pod and a worker of the chart's first pool, as the operator
    would make them from its rendered settings."""
    settings = load_settings(literal_env(container(one(docs, "Deployment", OPERATOR)))).worker
    session = AvatarSession.model_validate(session_manifest(uid="u-1"))
    pool = WorkerPool.model_validate(
        {**of_kind(docs, "WorkerPool")[0], "metadata": {
            **of_kind(docs, "WorkerPool")[0]["metadata"], "uid": "u-2"}}
    )  # fmt: skip
    return [
        resources.worker_pod(session, settings),
        pool_objects.worker_pod(pool, "worker-account", settings),
    ]


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
