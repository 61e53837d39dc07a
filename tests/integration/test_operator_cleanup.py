"""Cleanup: finished sessions expire, and a worker that never confirms it left the room never
keeps a deleted session alive beyond a bounded time (the finalize timeout)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from kubernetes import client as k8s

from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn


@pytest.mark.parametrize("operator_env", [{"FACECAST_TERMINAL_TTL_SECONDS": "2"}])
def test_finished_sessions_are_deleted_after_their_ttl(
    operator: OperatorProcess, sessions: Sessions
) -> None:
    sessions.create_tenant()
    name = sessions.create()
    sessions.wait_phase(name, "queued")  # no WorkerPool: it waits
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "canceled")
    wait_for(lambda: sessions.get(name) is None, timeout=20, description="expired session gone")


@pytest.mark.usefixtures("worker_per_session")
def test_a_worker_that_never_leaves_the_room_does_not_keep_a_deleted_session(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    """The worker is alive but never reports `leftAt`: the session waits in `ending` for the
    finalize timeout, then ends and is released all the same."""
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    pod = sessions.wait_pod_running(name)
    assert pod.metadata is not None
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")

    sessions.delete(name)
    ending = sessions.wait_phase(name, "ending")
    assert ending.status.reason == "user_ended"
    # finalize timeout is 5 s: ending, give up, end, release: well under 40 s.
    wait_for(lambda: sessions.get(name) is None, timeout=40, description="session released")

    def ended_note() -> str | None:
        events = sessions.core.list_namespaced_event(
            sessions.namespace, field_selector=f"involvedObject.name={name}"
        )
        return next((e.message for e in events.items if e.reason == "Ended"), None)

    note = wait_for(ended_note, timeout=15, description="the Ended Event")
    assert note == f"user_ended: worker {pod.metadata.name} did not confirm leaving the room"
