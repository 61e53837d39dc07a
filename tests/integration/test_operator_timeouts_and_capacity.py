"""Deadlines fire on time, and admission respects GPU capacity in FIFO order."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from kubernetes import client as k8s

from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn


def start_running(sessions: Sessions, api_client: k8s.ApiClient, **spec: Any) -> str:
    name = sessions.create(**spec)
    sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")
    return name


def lateness(sessions: Sessions, name: str, deadline: str) -> float:
    session = sessions.get(name)
    assert session is not None
    assert session.status.ending_at is not None
    assert session.status.deadlines is not None
    planned: datetime | None = getattr(session.status.deadlines, deadline)
    assert planned is not None
    return (session.status.ending_at - planned).total_seconds()


def test_idle_timeout_ends_the_session_on_time(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = start_running(sessions, api_client, idleTimeoutSeconds=2)
    ended = sessions.wait_phase(name, "ended", timeout=30)
    assert ended.status.reason == "idle_timeout"
    late = lateness(sessions, name, "idle_at")
    print(f"\nidle timeout: ended {late:.3f} s after the deadline")
    assert 0 <= late < 2.0


def test_max_duration_ends_the_session_on_time(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = start_running(sessions, api_client, idleTimeoutSeconds=None, maxDurationSeconds=3)
    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.heartbeat()
    ended = sessions.wait_phase(name, "ended", timeout=30)
    assert ended.status.reason == "max_duration_reached"
    late = lateness(sessions, name, "max_duration_at")
    print(f"\nmax duration: ended {late:.3f} s after the deadline")
    assert 0 <= late < 2.0


def test_third_session_waits_for_a_gpu_in_fifo_order(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(2)
    sessions.create_tenant()
    first = start_running(sessions, api_client, idleTimeoutSeconds=None)
    second = start_running(sessions, api_client, idleTimeoutSeconds=None)
    third = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(third, "queued")
    # Give admission every chance to get it wrong: the pods of the first two are Running.
    wait_for(lambda: sessions.pod(second) is not None, timeout=10, description="second pod")
    queued = sessions.get(third)
    assert queued is not None
    assert queued.status.phase == "queued"
    assert sessions.pod(third) is None

    sessions.patch_spec(first, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(first, "ended")
    sessions.wait_phase(third, "starting", timeout=30)
    sessions.wait_pod_running(third)
