"""The control plane is real: scheduling, kwok pod lifecycles, GC, RBAC, version."""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from kubernetes import client as k8s

from testbed.binaries import REPO_ROOT
from testbed.controlplane import ControlPlane
from testbed.crds import PLURALS, cluster_watched, wait_until_controllers_watch
from testbed.kwok import GPU_RESOURCE, GPU_TAINT, GpuNodeFactory
from testbed.metrics import samples
from testbed.wait import WaitTimeoutError, wait_for

pytestmark = pytest.mark.controlplane

TIMEOUT = 60.0
GPU_TOLERATION = {
    "key": GPU_TAINT["key"],
    "operator": "Equal",
    "value": GPU_TAINT["value"],
    "effect": GPU_TAINT["effect"],
}


def pod(name: str, *, gpus: int = 0, owner: dict[str, str] | None = None) -> k8s.V1Pod:
    """A pod that tolerates the GPU taint, optionally asking for GPUs or naming an owner."""
    resources = {"limits": {GPU_RESOURCE: str(gpus)}} if gpus else {}
    metadata: dict[str, Any] = {"name": name}
    if owner is not None:
        metadata["ownerReferences"] = [owner]
    manifest = {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": metadata,
        "spec": {
            # Never pulled: kwok only pretends to run containers.
            "containers": [
                {"name": "main", "image": "example.invalid/worker:0", "resources": resources}
            ],
            "tolerations": [GPU_TOLERATION],
        },
    }
    return k8s.V1Pod.model_validate(manifest)


def phase(pod: k8s.V1Pod) -> str | None:
    return pod.status.phase if pod.status else None


def condition(pod: k8s.V1Pod, kind: str) -> k8s.V1PodCondition:
    conditions = (pod.status and pod.status.conditions) or []
    found = next((c for c in conditions if c.type == kind), None)
    assert found is not None, f"pod has no {kind} condition: {conditions}"
    return found


def is_gone(read: Callable[[], object]) -> bool:
    try:
        read()
    except k8s.ApiException as error:
        if error.status == 404:
            return True
        raise
    return False


def test_gpu_pod_is_scheduled_onto_a_fake_gpu_node_and_runs(
    api_client: k8s.ApiClient, namespace: str, gpu_nodes: GpuNodeFactory
) -> None:
    (node,) = gpu_nodes(1)
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod("worker", gpus=1))

    def running() -> k8s.V1Pod | None:
        current = core.read_namespaced_pod("worker", namespace)
        return current if phase(current) == "Running" else None

    worker = wait_for(running, timeout=TIMEOUT, description="the GPU pod to be Running")
    assert worker.spec is not None
    assert worker.spec.node_name == node
    assert condition(worker, "PodScheduled").status == "True"
    assert condition(worker, "Ready").status == "True"


def test_pod_asking_for_more_gpus_than_any_node_has_stays_pending(
    api_client: k8s.ApiClient, namespace: str, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(1, gpus=1)
    core = k8s.CoreV1Api(api_client)
    core.create_namespaced_pod(namespace, pod("greedy", gpus=8))

    def rejected() -> k8s.V1Pod | None:
        current = core.read_namespaced_pod("greedy", namespace)
        conditions = (current.status and current.status.conditions) or []
        verdict = any(c.type == "PodScheduled" and c.status == "False" for c in conditions)
        return current if verdict else None

    greedy = wait_for(rejected, timeout=TIMEOUT, description="the scheduler's verdict")
    scheduled = condition(greedy, "PodScheduled")
    assert scheduled.reason == "Unschedulable"
    assert GPU_RESOURCE in (scheduled.message or "")
    assert phase(greedy) == "Pending"
    assert greedy.spec is not None
    assert greedy.spec.node_name is None


def test_deleting_the_owner_garbage_collects_pods_and_secrets(
    api_client: k8s.ApiClient, namespace: str, gpu_nodes: GpuNodeFactory
) -> None:
    gpu_nodes(1)
    core = k8s.CoreV1Api(api_client)
    owner = core.create_namespaced_config_map(
        namespace, k8s.V1ConfigMap(metadata=k8s.V1ObjectMeta(name="owner"))
    )
    assert owner.metadata is not None
    assert owner.metadata.uid is not None
    reference = {
        "apiVersion": "v1",
        "kind": "ConfigMap",
        "name": "owner",
        "uid": owner.metadata.uid,
    }
    secret = {
        "metadata": {"name": "token", "ownerReferences": [reference]},
        "stringData": {"t": "x"},
    }
    core.create_namespaced_secret(namespace, k8s.V1Secret.model_validate(secret))
    core.create_namespaced_pod(namespace, pod("dependent", owner=reference))
    # A Running pod is deleted through kwok's pod-delete stage, a real path.
    wait_for(
        lambda: phase(core.read_namespaced_pod("dependent", namespace)) == "Running",
        timeout=TIMEOUT,
        description="the dependent pod to be Running",
    )

    core.delete_namespaced_config_map("owner", namespace, propagation_policy="Background")

    wait_for(
        lambda: is_gone(lambda: core.read_namespaced_secret("token", namespace)),
        timeout=TIMEOUT,
        description="the garbage collector to delete the Secret",
    )
    wait_for(
        lambda: is_gone(lambda: core.read_namespaced_pod("dependent", namespace)),
        timeout=TIMEOUT,
        description="the garbage collector to delete the Pod",
    )


def test_rbac_is_enforced_for_an_impersonated_service_account(
    api_client: k8s.ApiClient, control_plane: ControlPlane, namespace: str
) -> None:
    subject = f"system:serviceaccount:{namespace}:default"
    with control_plane.api_client() as impersonating:
        impersonating.set_default_header("Impersonate-User", subject)
        as_service_account = k8s.CoreV1Api(impersonating)
        with pytest.raises(k8s.ApiException) as denied:
            as_service_account.list_namespaced_pod(namespace)
        assert denied.value.status == 403

        rbac = k8s.RbacAuthorizationV1Api(api_client)
        role = {
            "metadata": {"name": "pod-reader"},
            "rules": [{"apiGroups": [""], "resources": ["pods"], "verbs": ["list"]}],
        }
        rbac.create_namespaced_role(namespace, k8s.V1Role.model_validate(role))
        binding = {
            "metadata": {"name": "pod-reader"},
            "roleRef": {
                "apiGroup": "rbac.authorization.k8s.io",
                "kind": "Role",
                "name": "pod-reader",
            },
            "subjects": [{"kind": "ServiceAccount", "name": "default", "namespace": namespace}],
        }
        rbac.create_namespaced_role_binding(namespace, k8s.V1RoleBinding.model_validate(binding))
        # The authorizer reads RBAC objects from an informer cache: allowed soon, not at once.
        wait_for(
            lambda: as_service_account.list_namespaced_pod(namespace).items == [],
            timeout=TIMEOUT,
            description="the RoleBinding to take effect",
        )


def test_apiserver_reports_the_pinned_version(api_client: k8s.ApiClient) -> None:
    go_mod = (REPO_ROOT / "tools" / "testenv" / "kubernetes" / "go.mod").read_text()
    match = re.search(r"^\s*k8s\.io/kubernetes (v\S+)", go_mod, re.MULTILINE)
    assert match is not None
    assert k8s.VersionApi(api_client).get_code().git_version == match.group(1)


def test_samples_reads_one_metric_with_or_without_labels() -> None:
    metrics = "\n".join(
        (
            "# HELP go_sched_gomaxprocs_threads The current runtime.GOMAXPROCS setting.",
            "go_sched_gomaxprocs_threads 1",
            'apiserver_request_total{code="201",resource="secrets",verb="POST"} 4000',
            'apiserver_request_total{code="200",resource="",verb="GET"} 2.5e+01',
            'apiserver_request_total_other{resource="secrets"} 7',
        )
    )
    assert samples(metrics, "go_sched_gomaxprocs_threads") == [({}, 1.0)]
    assert samples(metrics, "apiserver_request_total") == [
        ({"code": "201", "resource": "secrets", "verb": "POST"}, 4000.0),
        ({"code": "200", "resource": "", "verb": "GET"}, 25.0),
    ]
    assert samples(metrics, "apiserver_watch_events_total") == []


def test_cluster_watched_counts_only_open_cluster_wide_watches_of_facecast_kinds() -> None:
    metrics = "\n".join(
        f'apiserver_longrunning_requests{{component="apiserver",group="{group}",'
        f'resource="{resource}",scope="{scope}",subresource="",verb="{verb}",version="v1"}} {n}'
        for group, resource, scope, verb, n in (
            ("facecast.io", "avatarsessions", "cluster", "WATCH", 1),
            ("facecast.io", "avatars", "namespace", "WATCH", 1),  # the API's own, not the GC's
            ("facecast.io", "tenants", "cluster", "WATCH", 0),  # ended
            ("", "secrets", "cluster", "WATCH", 2),
            ("facecast.io", "avatars", "cluster", "LIST", 1),
        )
    )
    assert cluster_watched(metrics) == {"avatarsessions"}


@pytest.mark.usefixtures("crds")
def test_benchmarks_can_wait_for_the_controllers_to_watch_the_facecast_kinds(
    testenv_bin: Path, kubeconfig: Path
) -> None:
    """kube-controller-manager's garbage collector finds the CRDs by its own discovery and
    watches every kind; a kind nobody watches ends the wait with its name."""
    kubectl = testenv_bin / "kubectl"
    wait_until_controllers_watch(kubectl, kubeconfig)

    with pytest.raises(WaitTimeoutError, match=r"cluster-wide watches of nosuchthings$"):
        wait_until_controllers_watch(kubectl, kubeconfig, [*PLURALS, "nosuchthings"], timeout=1)
