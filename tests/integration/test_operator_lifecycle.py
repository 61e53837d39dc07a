"""The operator on the real control plane with kwok GPU nodes: a session's whole life."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client as k8s

from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

pytestmark = pytest.mark.usefixtures("worker_per_session")


def test_full_lifecycle(
    operator: OperatorProcess,
    sessions: Sessions,
    gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()

    starting = sessions.wait_phase(name, "starting")
    assert starting.status.queued_at is not None
    assert starting.status.deadlines is not None
    assert starting.status.deadlines.start_by is not None
    pod = sessions.wait_pod_running(name)
    assert pod.spec is not None
    assert pod.spec.node_name is not None

    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.first_frame()
    running = sessions.wait_phase(name, "running")
    assert running.status.deadlines is not None
    assert running.status.deadlines.max_duration_at is not None

    worker.heartbeat(frames=250, billable_seconds=10.0)
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    ended = sessions.wait_phase(name, "ended")
    assert ended.status.reason == "user_ended"
    assert ended.status.usage is not None
    assert ended.status.usage.billable_seconds == 10.0
    wait_for(lambda: sessions.pod(name) is None, timeout=30, description="worker pod deleted")

    def ended_event_posted() -> list[str] | None:
        reasons = sessions.event_reasons(name)
        return reasons if "Ended" in reasons else None

    reasons = wait_for(ended_event_posted, timeout=15, description="transition events posted")
    for reason in ("Queued", "Starting", "Running", "Ending", "Ended"):
        assert reason in reasons, reasons

    usage = sessions.tenant_usage()
    assert usage["secondsUsed"] == 10.0
    assert usage["chargedSessions"] == [name]


def test_deleting_a_queued_session_cancels_it_and_releases_it(
    operator: OperatorProcess, sessions: Sessions
) -> None:
    sessions.create_tenant()
    name = sessions.create()  # no GPU node: it stays queued
    sessions.wait_phase(name, "queued")
    sessions.delete(name)
    wait_for(lambda: sessions.get(name) is None, timeout=30, description="session removed")
    assert "Canceled" in sessions.event_reasons(name)
