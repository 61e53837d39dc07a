"""A worker that dies with a long log tail quoting secrets: its session still fails and goes.

The worker container's `terminationMessagePolicy: FallbackToLogsOnError` makes the kubelet copy
the last lines of its log into the termination message (up to 2,048 bytes of log, and a
container may write up to 4,096 bytes of message itself). The operator turns that message into
the `status.message` of every session on that pool worker, their `Failed` Events and, through
the API, the customer's `failure.message`. A message over the CRD's limit made every status
write fail with 422: the session stayed `running` forever, could not be deleted (its finalizer
waits for a terminal phase) and was charged again on every retry. Redaction is checked on the
same path: the tail quotes the worker token and an API key, as a crashing SDK or a careless log
line would.

kwok runs no kubelet that could write a termination message, so the test writes the pod status
a kubelet would write, through the real API server.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s

from api_shim.sessions.mapping import to_public_session
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.redact import REDACTED
from avatar_crds.session import MESSAGE_MAX_LENGTH
from avatar_operator.resources import WORKER_CONTAINER
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

TOKEN = (
    "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJmYWNlY2FzdC13b3JrZXIiLCJ2aWRlbyI6eyJyb29tIjoi"
    "ciIsInJvb21Kb2luIjp0cnVlfX0.c2lnbmF0dXJlLXNpZ25hdHVyZS1zaWduYXR1cmU"
)
API_KEY = "fc_" + "Lw7-_q" * 7 + "Z"


def log_tail() -> str:
    """3,000 characters of a dying worker's stderr, JSON lines and a raw traceback."""
    head = (
        f'{{"event": "join failed", "error": "401 Unauthorized - invalid token: {TOKEN}"}}\n'
        f'{{"event": "config", "env": "FACECAST_API_KEY={API_KEY}"}}\n'
    )
    end = f"RuntimeError: room refused Authorization: Bearer {TOKEN}"
    frames = "".join(
        f'  File "/app/avatar_worker/worker.py", line {n}, in run\n' for n in range(99)
    )
    return head + frames[: 3000 - len(head) - len(end)] + end


def crash(core: k8s.CoreV1Api, namespace: str, pod: str, message: str) -> None:
    """What the kubelet writes when the worker container exits with an error."""
    now = datetime.now(UTC).isoformat()
    terminated = {"exitCode": 1, "reason": "Error", "message": message}
    container = {
        "name": WORKER_CONTAINER,
        "image": "facecast/worker:test",
        "imageID": "",
        "ready": False,
        "restartCount": 0,
        "state": {"terminated": {**terminated, "startedAt": now, "finishedAt": now}},
    }
    body: dict[str, Any] = {"status": {"phase": "Failed", "containerStatuses": [container]}}
    core.patch_namespaced_pod_status(pod, namespace, body)


@pytest.mark.usefixtures("worker_per_session")
def test_a_crash_with_a_3000_character_message_fails_redacted_and_deletes(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    pod = sessions.wait_pod_running(name)
    WorkerStandIn(api_client, sessions.namespace, name).first_frame()
    sessions.wait_phase(name, "running")
    assert pod.metadata is not None
    assert pod.metadata.name is not None
    message = log_tail()
    assert len(message) == 3000
    crash(sessions.core, sessions.namespace, pod.metadata.name, message)

    failed = sessions.wait_phase(name, "failed")
    assert failed.status.reason == "worker_lost"
    shown = failed.status.message
    assert shown is not None
    assert len(shown) <= MESSAGE_MAX_LENGTH
    assert shown.startswith(f"worker {pod.metadata.name} exited: ")
    assert shown.endswith(f"RuntimeError: room refused Authorization: {REDACTED}")
    failure = to_public_session(failed).failure
    assert failure is not None
    events = wait_for(
        lambda: failed_events(sessions, name), timeout=15, description="the Failed Event"
    )
    for text in (shown, failure.message, *events):
        assert TOKEN not in text
        assert API_KEY not in text
    assert REDACTED in events[0]

    sessions.delete(name)
    wait_for(lambda: sessions.get(name) is None, timeout=30, description=f"{name} deleted")
    operator_log = (operator.log_dir / "operator-1.log").read_text()
    assert "Unprocessable Entity" not in operator_log  # no status write was refused
    assert TOKEN not in operator_log
    assert API_KEY not in operator_log


def test_the_api_server_counts_the_limit_in_characters(sessions: Sessions) -> None:
    """The clip counts characters, as Python's len does; so must the API server, or a message
    of multi-byte characters that fits would still be refused (its 422 says "bytes")."""
    sessions.create_tenant()
    name = sessions.create()

    def write_message(message: str) -> None:
        status = {"phase": "failed", "reason": "worker_lost", "message": message}
        sessions.custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, sessions.namespace, AVATAR_SESSION.plural, name, {"status": status}
        )

    write_message("é" * MESSAGE_MAX_LENGTH)  # 2,048 bytes of UTF-8
    with pytest.raises(k8s.ApiException) as refused:
        write_message("é" * (MESSAGE_MAX_LENGTH + 1))
    assert refused.value.status == 422


def failed_events(sessions: Sessions, name: str) -> list[str] | None:
    events = sessions.core.list_namespaced_event(
        sessions.namespace, field_selector=f"involvedObject.name={name}"
    )
    messages = [event.message or "" for event in events.items if event.reason == "Failed"]
    return messages or None
