"""The status fields the operator writes besides the phase, on the real control plane: a
session's conditions, observedGeneration, binding and podName (the pool worker it is bound to),
and its tenant's active-session count (every session holding a slot: waiting ones included)
and billing period. Each session gets a cold pool worker of its own (the `worker_per_session`
fixture)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from avatar_crds import billing, contract
from avatar_crds.kinds import TENANT
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.session import AvatarSession, Condition
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.pools import POOL
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

pytestmark = pytest.mark.usefixtures("worker_per_session")


def condition(session: AvatarSession, kind: str) -> Condition:
    (found,) = [c for c in session.status.conditions if c.type == kind]
    return found


def wait_active(sessions: Sessions, count: int) -> dict[str, Any]:
    def written() -> dict[str, Any] | None:
        try:
            usage = sessions.tenant_usage()
        except KeyError:  # no status yet
            return None
        return usage if usage.get("activeSessions", 0) == count else None

    return wait_for(written, timeout=30, description=f"tenant activeSessions == {count}")


def test_conditions_generation_and_pod_name_follow_the_session(
    operator: OperatorProcess,
    sessions: Sessions,
    gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()

    starting = sessions.wait_phase(name, "starting")
    binding = starting.status.binding
    assert binding is not None
    assert (binding.pool, binding.slot) == (POOL, 0)
    assert starting.status.pod_name == binding.pod
    worker_pod = k8s.CoreV1Api(api_client).read_namespaced_pod(binding.pod, sessions.namespace)
    assert worker_pod.metadata is not None
    assert worker_pod.metadata.labels is not None
    assert contract.pool_worker_labels(POOL).items() <= worker_pod.metadata.labels.items()
    assert starting.status.observed_generation == starting.metadata.generation
    admitted = condition(starting, "Admitted")
    assert (admitted.status, admitted.reason) == ("True", "SlotBound")
    assert admitted.last_transition_time is not None
    ready = condition(starting, "Ready")
    assert (ready.status, ready.reason) == ("False", "WaitingForFirstFrame")
    wait_active(sessions, 1)

    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.first_frame()
    running = sessions.wait_phase(name, "running")
    assert condition(running, "Ready").status == "True"
    # Still admitted: the same transition as before, not a new one.
    assert condition(running, "Admitted").last_transition_time == admitted.last_transition_time

    # A keep-alive changes the spec: the operator reports the generation it acted on.
    sessions.patch_spec(name, keepAliveAt=datetime.now(UTC).isoformat())

    def caught_up() -> AvatarSession | None:
        session = sessions.get(name)
        if session is None or session.metadata.generation == running.metadata.generation:
            return None
        observed = {c.observed_generation for c in session.status.conditions}
        current = session.status.observed_generation == session.metadata.generation
        return session if current and observed == {session.metadata.generation} else None

    wait_for(caught_up, timeout=30, description="observedGeneration after a keep-alive")

    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    ending = sessions.wait_phase(name, "ending")
    assert condition(ending, "Ready").status == "False"
    worker.left()
    ended = sessions.wait_phase(name, "ended")
    ready = condition(ended, "Ready")
    assert (ready.status, ready.reason) == ("False", "UserEnded")
    wait_active(sessions, 0)


def test_a_queued_session_holds_its_tenants_slot_until_canceled(
    operator: OperatorProcess, sessions: Sessions
) -> None:
    """No GPU anywhere, so the pool's worker for it never schedules: the session waits, and
    counts from create, as the API counts it against the plan's maxConcurrentSessions
    (avatar_crds.phases.holds_slot)."""
    sessions.create_tenant()
    name = sessions.create()
    queued = sessions.wait_phase(name, "queued")
    assert queued.status.binding is None
    assert queued.status.pod_name is None
    admitted = condition(queued, "Admitted")
    assert (admitted.status, admitted.reason) == ("False", "WaitingForSlot")
    wait_active(sessions, 1)

    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "canceled")
    wait_active(sessions, 0)


def test_a_charge_after_the_billing_period_ended_starts_a_new_one(
    operator: OperatorProcess,
    sessions: Sessions,
    gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:
    """Last period's minutes are used up: this period they count as nothing, so the session
    runs (not ended for minutes_exhausted), and its charge replaces them."""
    gpu_nodes(1)
    sessions.create_tenant(minutes=1)
    past = {"usage": {"secondsUsed": 600.0, "periodStart": "2020-01-01T00:00:00Z"}}
    k8s.CustomObjectsApi(api_client).patch_namespaced_custom_object_status(
        GROUP, VERSION, sessions.namespace, TENANT.plural, "acme", {"status": past}
    )
    name = sessions.create()
    sessions.wait_phase(name, "starting")
    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.first_frame()
    sessions.wait_phase(name, "running")
    worker.heartbeat(billable_seconds=12.0)
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "ending")
    worker.left()
    ended = sessions.wait_phase(name, "ended")
    assert ended.status.reason == "user_ended"

    usage = wait_active(sessions, 0)
    assert usage["secondsUsed"] == 12.0
    assert usage["chargedSessions"] == [name]
    start = datetime.fromisoformat(usage["periodStart"])
    assert start == billing.period_start(datetime.now(UTC))
