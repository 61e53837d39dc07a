"""The local node (tools/localstack/runner.py) on a real control plane runs a pod as a pool
worker's is made: named by generateName, env from the downward API, no Secret volume, and an
exec `cat FILE` readiness probe it reports as a kubelet would."""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from testbed.controlplane import ControlPlane
from testbed.process import ComponentDiedError, ManagedProcess
from testbed.wait import wait_for
from tools.localstack.kubelet_status import node_manifest

REPO_ROOT = Path(__file__).resolve().parents[2]
READY_ARG = "--ready-file"
# The container: its environment and arguments to a file in its directory (the pod's), then
# wait for SIGTERM.
RECORD = (
    "import json, os, signal, sys\n"
    "seen = {'env': dict(os.environ), 'argv': sys.argv[1:]}\n"
    "with open('seen.json.part', 'w') as out: json.dump(seen, out)\n"
    "os.rename('seen.json.part', 'seen.json')\n"
    "signal.pause()\n"
)


@dataclass
class Node:
    name: str
    pods_dir: Path
    runner: ManagedProcess


@pytest.fixture
def local_node(
    control_plane: ControlPlane, api_client: k8s.ApiClient, tmp_path: Path
) -> Iterator[Node]:
    """A local node of its own, cordoned before it registers so that the scheduler never sends
    another test's pods to it (pods here name it in spec.nodeName)."""
    name = f"local-test-{uuid.uuid4().hex[:8]}"
    core = k8s.CoreV1Api(api_client)
    manifest = node_manifest(name, 0)
    manifest["spec"]["unschedulable"] = True
    core.create_node(k8s.V1Node.model_validate(manifest))
    kubeconfig = control_plane.kubeconfig_for(
        f"node-{name}", f"system:node:{name}", ("system:nodes",)
    )
    runner = ManagedProcess(
        "runner",
        [sys.executable, "-m", "tools.localstack.runner", f"--kubeconfig={kubeconfig}",
         f"--node-name={name}", "--gpus=0", f"--work-dir={tmp_path / 'pods'}",
         f"--readiness-file-arg={READY_ARG}"],
        tmp_path / "runner.log", cwd=REPO_ROOT,
    )  # fmt: skip
    try:
        yield Node(name, tmp_path / "pods", runner)
    finally:
        runner.stop(30)
        core.delete_node(name)


def _probed_pod(node: str, account: str) -> dict[str, Any]:
    def field(path: str) -> dict[str, Any]:
        return {"fieldRef": {"fieldPath": path}}

    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"generateName": "pool-worker-"},
        "spec": {
            "nodeName": node,
            "serviceAccountName": account,
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 5,
            "tolerations": [{"operator": "Exists"}],
            "containers": [
                {
                    "name": "worker",
                    "image": "facecast/probe:local",
                    "command": [sys.executable, "-c", RECORD],
                    "env": [
                        {"name": "POD_NAME", "valueFrom": field("metadata.name")},
                        {"name": "POD_NAMESPACE", "valueFrom": field("metadata.namespace")},
                        {"name": "ACCOUNT", "valueFrom": field("spec.serviceAccountName")},
                    ],
                    "readinessProbe": {
                        "exec": {"command": ["cat", "/tmp/ready"]},
                        "periodSeconds": 1,
                        "failureThreshold": 1,
                    },
                }
            ],
        },
    }


def _ready(pod: k8s.V1Pod) -> tuple[bool, bool]:
    """(the pod's Ready condition, its container's ready)."""
    status = pod.status
    conditions = {c.type: c.status for c in (status.conditions if status else None) or []}
    containers = (status.container_statuses if status else None) or []
    return conditions.get("Ready") == "True", bool(containers and containers[0].ready)


def test_a_probed_pod_is_ready_only_while_its_file_exists(
    local_node: Node, api_client: k8s.ApiClient, namespace: str
) -> None:
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_service_account(
        namespace, k8s.V1ServiceAccount(metadata=k8s.V1ObjectMeta(name="prober"))
    )
    created = core.create_namespaced_pod(
        namespace, k8s.V1Pod.model_validate(_probed_pod(local_node.name, "prober"))
    )
    assert created.metadata is not None
    name = str(created.metadata.name)
    assert name.startswith("pool-worker-")

    def read() -> k8s.V1Pod:
        local_node.runner.check_alive()
        return core.read_namespaced_pod(name, namespace)

    def phase() -> str:
        pod = read()
        return str(pod.status.phase if pod.status else "")

    def recorded() -> dict[str, Any] | None:
        local_node.runner.check_alive()
        found = list(local_node.pods_dir.glob(f"{name}-*/seen.json"))
        seen: dict[str, Any] | None = json.loads(found[0].read_text()) if found else None
        return seen

    seen = wait_for(
        recorded, timeout=60, description="the container's env", fatal=(ComponentDiedError,)
    )
    env: dict[str, str] = seen["env"]
    assert (env["POD_NAME"], env["POD_NAMESPACE"], env["ACCOUNT"]) == (name, namespace, "prober")
    # The probe's /tmp/ready, where the process finds it: its own /tmp, here a pod directory.
    ready_file = Path(env["TMPDIR"]) / "ready"
    assert seen["argv"] == [READY_ARG, str(ready_file)]
    wait_for(
        lambda: phase() == "Running",
        timeout=30, description="Running", fatal=(ComponentDiedError,),
    )  # fmt: skip
    assert _ready(read()) == (False, False)  # no file yet

    ready_file.write_text("ok")
    wait_for(
        lambda: _ready(read()) == (True, True),
        timeout=30, description="Ready once the file exists", fatal=(ComponentDiedError,),
    )  # fmt: skip

    ready_file.unlink()
    wait_for(
        lambda: _ready(read()) == (False, False),
        timeout=30, description="not Ready once it is gone", fatal=(ComponentDiedError,),
    )  # fmt: skip
    assert phase() == "Running"

    # No Secret volume: the process still has its own account's credentials.
    with k8s_config.new_client_from_config(config_file=env["KUBECONFIG"]) as own:
        review = k8s.AuthenticationV1Api(own).create_self_subject_review(k8s.V1SelfSubjectReview())
    user = review.status.user_info if review.status else None
    assert user is not None
    assert user.username == f"system:serviceaccount:{namespace}:prober"

    core.delete_namespaced_pod(name, namespace)

    def gone() -> bool:
        try:
            read()
        except k8s.ApiException as error:
            return bool(error.status == 404)
        return False

    wait_for(gone, timeout=30, description="pod removed", fatal=(ComponentDiedError,))
