"""Stop the operator in the middle of 20 running sessions and start it again: every session
keeps its pool worker (no worker made twice, none deleted or replaced), and the restarted pool
controller counts all 20 as busy before it acts on a new session."""

from __future__ import annotations

from typing import Any, cast

import pytest
from kubernetes import client as k8s

from avatar_crds.kinds import WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import Binding
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import POOL
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

pytestmark = pytest.mark.usefixtures("worker_per_session")

SESSIONS = 20
"""As many as the pool's maxWorkers (testbed.pools.one_worker_per_session) and the GPUs."""


def test_restart_loses_duplicates_and_restarts_nothing(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(5, gpus=4)
    sessions.create_tenant(max_concurrent=SESSIONS + 1)
    names = [sessions.create(idleTimeoutSeconds=None) for _ in range(SESSIONS)]
    workers = {n: WorkerStandIn(api_client, sessions.namespace, n) for n in names}
    for name in names:
        sessions.wait_pod_running(name, timeout=60)
        workers[name].first_frame()
    for name in names:
        sessions.wait_phase(name, "running", timeout=60)

    def snapshot() -> dict[str, tuple[str, str, Binding | None, object, object]]:
        state: dict[str, tuple[str, str, Binding | None, object, object]] = {}
        for name in names:
            session, pod = sessions.get(name), sessions.pod(name)
            assert session is not None
            assert pod is not None
            assert pod.metadata is not None
            state[name] = (
                str(session.status.phase),
                str(pod.metadata.uid),
                session.status.binding,
                session.status.deadlines,
                session.status.running_at,
            )
        return state

    before = snapshot()
    slots = {(b.pod, b.slot) for _, _, b, _, _ in before.values() if b is not None}
    assert len(slots) == SESSIONS  # a worker of its own each
    operator.stop()
    for worker in workers.values():  # the workers live on while the operator is away
        worker.heartbeat()
    operator.start()
    # A new session: the pool is at maxWorkers with every worker busy, so it must wait.
    probe = sessions.create(idleTimeoutSeconds=None)
    sessions.wait_phase(probe, "queued")

    def pool_full_with_one_queued() -> dict[str, Any] | None:
        """The restarted operator has re-read every binding and the queue."""
        body = cast(
            dict[str, Any],
            sessions.custom.get_namespaced_custom_object(
                GROUP, VERSION, sessions.namespace, WORKER_POOL.plural, POOL
            ),
        )
        status = body.get("status") or {}
        limited = [c for c in status.get("conditions", []) if c["type"] == "ScalingLimited"]
        if status.get("busySlots") == SESSIONS and limited and limited[0]["status"] == "True":
            return status
        return None

    status = wait_for(pool_full_with_one_queued, timeout=30, description="pool full, 1 queued")
    assert status["desiredWorkers"] == SESSIONS
    assert status["freeSlots"] == 0
    after = snapshot()
    assert after == before

    # No duplicates, and the probe waits: all 20 GPUs are still held by the 20 sessions.
    pods = sessions.core.list_namespaced_pod(sessions.namespace).items
    assert len(pods) == SESSIONS
    waiting = sessions.get(probe)
    assert waiting is not None
    assert waiting.status.phase == "queued"
    assert waiting.status.binding is None
    wait_for(
        lambda: all((s := sessions.get(n)) and s.status.phase == "running" for n in names),
        timeout=10,
        description="all sessions still running",
    )
