"""Cleanup: finished sessions expire, orphan worker pods are swept, and a stuck child never
keeps a deleted session alive beyond a bounded time."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client as k8s

from avatar_crds import contract
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

HOLD = "facecast.test/hold"


@pytest.mark.parametrize("operator_env", [{"FACECAST_TERMINAL_TTL_SECONDS": "2"}])
def test_finished_sessions_are_deleted_after_their_ttl(
    operator: OperatorProcess, sessions: Sessions
) -> None:
    sessions.create_tenant()
    name = sessions.create()
    sessions.wait_phase(name, "queued")  # no GPU node: it waits
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "canceled")
    wait_for(lambda: sessions.get(name) is None, timeout=20, description="expired session gone")


def test_orphan_worker_pods_are_swept(operator: OperatorProcess, sessions: Sessions) -> None:
    labels = {
        contract.LABEL_MANAGED_BY: contract.MANAGED_BY,
        contract.LABEL_COMPONENT: "worker",
        contract.LABEL_SESSION: "sess-01m7zzzzzzzzzzzzzzzzzzzzzz",
    }
    pod = k8s.V1Pod.model_validate(
        {
            "metadata": {"name": "orphan-worker", "labels": labels},
            "spec": {"containers": [{"name": "worker", "image": "facecast/worker:test"}]},
        }
    )
    sessions.core.create_namespaced_pod(sessions.namespace, pod)
    kept = k8s.V1Pod.model_validate(
        {
            "metadata": {"name": "not-ours", "labels": {"app": "other"}},
            "spec": {"containers": [{"name": "c", "image": "other:1"}]},
        }
    )
    sessions.core.create_namespaced_pod(sessions.namespace, kept)

    def orphan_gone() -> bool:
        try:
            found = sessions.core.read_namespaced_pod("orphan-worker", sessions.namespace)
        except k8s.ApiException as exc:
            return bool(exc.status == 404)
        return bool(found.metadata and found.metadata.deletion_timestamp)

    wait_for(orphan_gone, timeout=30, description="orphan worker pod deleted")
    assert sessions.core.read_namespaced_pod("not-ours", sessions.namespace).metadata is not None


def test_a_stuck_worker_pod_does_not_keep_a_deleted_session(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")
    pod_name = contract.worker_pod_name(name)
    sessions.core.patch_namespaced_pod(
        pod_name, sessions.namespace, {"metadata": {"finalizers": [HOLD]}}
    )
    try:
        sessions.delete(name)
        # finalize timeout is 5 s: drain, force, give up, release: well under 40 s.
        wait_for(lambda: sessions.get(name) is None, timeout=40, description="session released")
        assert "Ended" in sessions.event_reasons(name)
    finally:
        sessions.core.patch_namespaced_pod(
            pod_name, sessions.namespace, {"metadata": {"finalizers": None}}
        )
