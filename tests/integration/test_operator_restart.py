"""Stop the operator in the middle of 20 running sessions and start it again."""

from __future__ import annotations

from kubernetes import client as k8s

from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

SESSIONS = 20


def test_restart_loses_duplicates_and_restarts_nothing(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(5, gpus=4)
    sessions.create_tenant(max_concurrent=SESSIONS)
    names = [sessions.create(idleTimeoutSeconds=None) for _ in range(SESSIONS)]
    workers = {n: WorkerStandIn(api_client, sessions.namespace, n) for n in names}
    for name in names:
        sessions.wait_pod_running(name, timeout=60)
        workers[name].first_frame()
    for name in names:
        sessions.wait_phase(name, "running", timeout=60)

    def snapshot() -> dict[str, tuple[str, str, object, object]]:
        state: dict[str, tuple[str, str, object, object]] = {}
        for name in names:
            session, pod = sessions.get(name), sessions.pod(name)
            assert session is not None
            assert pod is not None
            assert pod.metadata is not None
            state[name] = (
                str(session.status.phase),
                str(pod.metadata.uid),
                session.status.deadlines,
                session.status.running_at,
            )
        return state

    before = snapshot()
    operator.stop()
    for worker in workers.values():  # the workers live on while the operator is away
        worker.heartbeat()
    operator.start()
    # The restarted operator has re-read everything once it serves a new session.
    probe = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(probe, "queued")
    after = snapshot()
    assert after == before

    # No duplicates, and the probe waits: all 20 GPUs are still held by the 20 sessions.
    pods = sessions.core.list_namespaced_pod(sessions.namespace).items
    assert len(pods) == SESSIONS
    wait_for(
        lambda: all((s := sessions.get(n)) and s.status.phase == "running" for n in names),
        timeout=10,
        description="all sessions still running",
    )
