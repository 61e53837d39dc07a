"""Each way a worker can be lost ends the session in `failed` with the right reason."""

from __future__ import annotations

import pytest
from kubernetes import client as k8s

from testbed.controlplane import NEVER_PULLS_IMAGE
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn


def running(sessions: Sessions, api_client: k8s.ApiClient) -> tuple[str, k8s.V1Pod]:
    sessions.create_tenant()
    name = sessions.create()
    pod = sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")
    return name, pod


def test_pod_deleted_by_hand(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    name, pod = running(sessions, api_client)
    assert pod.metadata is not None
    assert pod.metadata.name is not None
    sessions.core.delete_namespaced_pod(pod.metadata.name, sessions.namespace)
    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason == "pod_deleted"


def test_node_deleted(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    name, pod = running(sessions, api_client)
    assert pod.spec is not None
    assert pod.spec.node_name is not None
    sessions.core.delete_node(pod.spec.node_name)
    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason in ("node_lost", "pod_deleted")
    assert failed.status.reason == "node_lost", failed.status.message


def test_worker_reports_a_bad_token(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).give_up(
        "transport_auth_failed", "LiveKit refused the token"
    )
    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason == "transport_auth_failed"


@pytest.mark.parametrize(
    "operator_env",
    [{"FACECAST_START_TIMEOUT_SECONDS": "4", "FACECAST_WORKER_IMAGE": NEVER_PULLS_IMAGE}],
)
def test_image_that_never_starts(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory
) -> None:
    """kwok holds the pod in ErrImagePull, as a kubelet would for an unpullable image."""
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()

    def pull_failing() -> bool:
        pod = sessions.pod(name)
        statuses = (pod.status.container_statuses if pod and pod.status else None) or []
        return any(s.state and s.state.waiting and s.state.waiting.reason == "ErrImagePull"
                   for s in statuses)  # fmt: skip

    wait_for(pull_failing, timeout=20, description="worker container in ErrImagePull")
    failed = sessions.wait_phase(name, "failed", timeout=30)
    assert failed.status.reason == "start_timeout"
    assert failed.status.message is not None
    assert "ErrImagePull" in failed.status.message


@pytest.mark.parametrize(
    "operator_env",
    [{"FACECAST_START_TIMEOUT_SECONDS": "4"}],
)
def test_worker_that_never_reports_a_frame_times_out(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory
) -> None:
    """The pod runs but the worker never publishes a frame: the start deadline fails it."""
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    failed = sessions.wait_phase(name, "failed", timeout=30)
    assert failed.status.reason == "start_timeout"
    assert sessions.event_reasons(name)[-1] == "Failed"


@pytest.mark.parametrize(
    "operator_env",
    [{"FACECAST_START_TIMEOUT_SECONDS": "4",
      "FACECAST_WORKER_RESOURCES": '{"requests": {"cpu": "64", "memory": "128Mi"}}'}],
)  # fmt: skip
def test_session_that_cannot_be_scheduled(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory
) -> None:
    """A GPU is free on a node the worker fits, but the worker asks for more CPU than any node
    has (admission counts GPUs only; a node the worker does not fit keeps it queued instead:
    test_operator_gpu_placement.py)."""
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    failed = sessions.wait_phase(name, "failed", timeout=30)
    assert failed.status.reason == "unschedulable"
    assert failed.status.message is not None
    assert "node" in failed.status.message
