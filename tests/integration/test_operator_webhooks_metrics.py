"""Signed, retried webhooks to a real HTTP endpoint, and the operator's Prometheus metrics.
Each session gets a cold pool worker of its own (the `worker_per_session` fixture)."""

from __future__ import annotations

import urllib.request
from datetime import UTC, datetime

import pytest
from kubernetes import client as k8s

from avatar_crds import ids
from avatar_operator.webhooks import verify
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.process import free_port
from testbed.sessions import Sessions
from testbed.wait import wait_for
from testbed.webhook_receiver import WebhookReceiver
from tests.integration.worker_standin import WorkerStandIn

SIGNING_KEY = "whsec-test-3b1f0c"

pytestmark = pytest.mark.usefixtures("worker_per_session")


@pytest.fixture
def metrics_port() -> int:
    return free_port()


@pytest.fixture
def operator_env(metrics_port: int) -> dict[str, str]:
    return {"FACECAST_METRICS_PORT": str(metrics_port)}


def metric(port: int, line_prefix: str) -> float | None:
    text = urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5).read().decode()
    for line in text.splitlines():
        if line.startswith(line_prefix):
            return float(line.rsplit(" ", 1)[1])
    return None


def create_tenant_with_webhook(sessions: Sessions, receiver: WebhookReceiver) -> None:
    secret = k8s.V1Secret.model_validate(
        {"metadata": {"name": "acme-webhook"}, "stringData": {"signing": SIGNING_KEY}}
    )
    sessions.core.create_namespaced_secret(sessions.namespace, secret)
    sessions.create_tenant(
        webhook={"url": receiver.url, "secretRef": {"name": "acme-webhook", "key": "signing"}}
    )


def test_webhooks_are_signed_retried_and_echo_metadata(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient, receiver: WebhookReceiver, metrics_port: int,
) -> None:  # fmt: skip
    gpu_nodes(1)
    create_tenant_with_webhook(sessions, receiver)
    name = sessions.create(metadata={"order": 42, "channel": "support"})
    sessions.wait_pod_running(name)
    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.first_frame()
    sessions.wait_phase(name, "running")
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "ending")
    worker.left()
    sessions.wait_phase(name, "ended")

    expected = ["session.queued", "session.started", "session.first_frame", "session.ended"]
    wait_for(
        lambda: all(t in receiver.types() for t in expected),
        timeout=30,
        description="every webhook delivered",
    )
    assert receiver.refused == 1  # the first delivery failed and was retried
    for body, signature, raw in receiver.received:
        assert verify(SIGNING_KEY, signature, raw), body["type"]
        assert not verify("another-key", signature, raw)
        assert body["data"]["session_id"] == ids.to_public_id(name)
        assert body["data"]["metadata"] == {"order": 42, "channel": "support"}
    ended = next(body for body, _, _ in receiver.received if body["type"] == "session.ended")
    assert ended["data"]["status"] == "ended"
    assert ended["data"]["reason"] == "user_ended"
    assert SIGNING_KEY not in operator.log_tail(2000)

    running_to_ending = 'facecast_session_transitions_total{from_phase="running",to_phase="ending"}'
    assert metric(metrics_port, running_to_ending) == 1.0
    assert metric(metrics_port, "facecast_time_to_running_seconds_count") == 1.0
    assert metric(metrics_port, "facecast_reconciles_total") is not None
    assert metric(metrics_port, 'facecast_sessions{phase="ended"}') == 1.0


@pytest.mark.parametrize("operator_env", [{"FACECAST_WEBHOOK_MAX_ATTEMPTS": "20"}])
def test_a_restarted_operator_delivers_what_the_last_one_could_not(
    operator: OperatorProcess, sessions: Sessions, receiver: WebhookReceiver
) -> None:
    receiver.down = True
    create_tenant_with_webhook(sessions, receiver)
    name = sessions.create()  # no GPU node for its worker: it stays queued
    sessions.wait_phase(name, "queued")
    wait_for(lambda: receiver.refused >= 2, timeout=30, description="a delivery retried")

    def pending() -> list[str]:
        session = sessions.get(name)
        assert session is not None
        return [str(p.event) for p in session.status.pending_webhooks]

    operator.stop()  # while it still retries `session.queued`
    assert pending() == ["session.queued"]
    receiver.down = False
    operator.start()

    wait_for(lambda: receiver.types() == ["session.queued"], timeout=30, description="delivered")
    wait_for(lambda: pending() == [], timeout=30, description="taken out of the status")
    body, signature, raw = receiver.received[0]
    assert verify(SIGNING_KEY, signature, raw)
    session = sessions.get(name)
    assert session is not None
    assert session.status.queued_at is not None
    # The event tells when it happened, not when it finally got through.
    assert body["created"] == int(session.status.queued_at.timestamp())
    assert body["data"]["status"] == "queued"
