"""Speech and cutoff warnings through the real operator and control plane: the worker's speech
reports (written through the status subresource, as the worker writes them) become
speak.started / speak.finished webhooks once each, across an operator restart; a session
warned of its idle cutoff is kept alive and does not end at the old deadline; and a pool
worker's own token (the grant the operator writes when it binds a session to the worker) may
watch the session bound to it, and no other. Each session gets a cold pool worker of its own
(the `worker_per_session` fixture)."""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config
from kubernetes import watch as k8s_watch

from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.speech import SpeakTaskReport, SpeechState
from testbed.controlplane import ControlPlane
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import Sessions
from testbed.wait import wait_for
from testbed.webhook_receiver import WebhookReceiver
from tests.integration.test_operator_webhooks_metrics import create_tenant_with_webhook
from tests.integration.worker_standin import WorkerStandIn

SPOKEN = "spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3"
CUT_BEFORE_START = "spk_01JCZ3V7M4Q8R2T6W9X0Y1Z2B4"
WARNING_SECONDS = 4
IDLE_SECONDS = 8

pytestmark = pytest.mark.usefixtures("worker_per_session")


def speak_events(receiver: WebhookReceiver) -> Counter[tuple[str, str, str]]:
    return Counter(
        (body["type"], body["data"]["speak"]["id"], body["data"]["speak"]["state"])
        for body, _, _ in receiver.received
        if body["type"].startswith("speak.")
    )


def running_session(
    sessions: Sessions, api_client: k8s.ApiClient, **spec: Any
) -> tuple[str, WorkerStandIn]:
    name = sessions.create(**spec)
    sessions.wait_pod_running(name)
    worker = WorkerStandIn(api_client, sessions.namespace, name)
    worker.first_frame()
    sessions.wait_phase(name, "running")
    return name, worker


def test_speech_reports_fire_each_speak_webhook_once_across_a_restart(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient, receiver: WebhookReceiver,
) -> None:  # fmt: skip
    gpu_nodes(1)
    create_tenant_with_webhook(sessions, receiver)
    name, worker = running_session(sessions, api_client)
    started_at = datetime.now(UTC)
    speaking = SpeakTaskReport(id=SPOKEN, state=SpeechState.SPEAKING, started_at=started_at)
    worker.speech(speaking)
    started = ("speak.started", SPOKEN, "speaking")
    wait_for(lambda: speak_events(receiver)[started], timeout=30, description="speak.started")

    def announced() -> list[str]:
        session = sessions.get(name)
        assert session is not None
        return [entry.id for entry in session.status.announced_speech]

    wait_for(lambda: announced() == [SPOKEN], timeout=30, description="the record written")
    operator.stop()  # a new operator reads the same report: it must not announce it again
    operator.start()
    done = speaking.model_copy(update={"state": SpeechState.DONE, "finished_at": datetime.now(UTC)})
    cut = SpeakTaskReport(id=CUT_BEFORE_START, state=SpeechState.INTERRUPTED,
                          finished_at=datetime.now(UTC))  # fmt: skip
    worker.speech(done, cut)
    finished = ("speak.finished", SPOKEN, "done")
    interrupted = ("speak.finished", CUT_BEFORE_START, "interrupted")
    wait_for(
        lambda: speak_events(receiver)[finished] and speak_events(receiver)[interrupted],
        timeout=30,
        description="both speak.finished",
    )
    # Whatever was still to come is queued by now: ending the session delivers it first.
    sessions.patch_spec(name, endRequestedAt=datetime.now(UTC).isoformat())
    sessions.wait_phase(name, "ending")
    worker.left()
    sessions.wait_phase(name, "ended")
    wait_for(lambda: "session.ended" in receiver.types(), timeout=30, description="ended")
    assert speak_events(receiver) == Counter({started: 1, finished: 1, interrupted: 1})
    body = next(b for b, _, _ in receiver.received if b["type"] == "speak.finished"
                and b["data"]["speak"]["id"] == SPOKEN)  # fmt: skip
    assert body["data"]["speak"]["started_at"] is not None
    assert body["data"]["speak"]["finished_at"] is not None
    assert body["data"]["status"] == "running"


@pytest.mark.parametrize("operator_env", [{"FACECAST_ENDING_SOON_SECONDS": str(WARNING_SECONDS)}])
def test_a_warned_session_kept_alive_outlives_its_old_cutoff(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient, receiver: WebhookReceiver,
) -> None:  # fmt: skip
    gpu_nodes(1)
    create_tenant_with_webhook(sessions, receiver)
    name, worker = running_session(sessions, api_client, idleTimeoutSeconds=IDLE_SECONDS)

    def warnings() -> list[dict[str, Any]]:
        return [b["data"] for b, _, _ in receiver.received if b["type"] == "session.ending_soon"]

    first = wait_for(warnings, timeout=30, description="session.ending_soon")[0]
    assert first["reason"] == "idle_timeout"
    warned = sessions.get(name)
    assert warned is not None
    assert warned.status.ending_soon is not None
    old_cutoff = warned.status.ending_soon.at
    assert first["at"] == old_cutoff.isoformat().replace("+00:00", "Z")
    assert datetime.now(UTC) < old_cutoff  # the warning came before the cutoff

    worker.heartbeat()
    sessions.patch_spec(name, keepAliveAt=datetime.now(UTC).isoformat())

    def cleared() -> bool:
        session = sessions.get(name)
        return session is not None and session.status.ending_soon != warned.status.ending_soon

    wait_for(cleared, timeout=30, description="the warning cleared")
    # The next approach warns again, of a cutoff past the old one: by then the old cutoff
    # has passed, and the session is still running.
    worker.heartbeat()
    wait_for(lambda: len(warnings()) >= 2, timeout=30, description="a second warning")
    second = warnings()[1]
    assert second["at"] > first["at"]
    assert datetime.now(UTC) > old_cutoff
    session = sessions.get(name)
    assert session is not None
    assert session.status.phase == "running"


# --- the worker's watch --------------------------------------------------------------------


@pytest.fixture
def worker_custom_api(
    control_plane: ControlPlane, namespace: str, sessions: Sessions
) -> Iterator[Any]:
    """A client holding a fresh token (TokenRequest) of the ServiceAccount of the pool worker
    a session is bound to."""
    clients: list[k8s.ApiClient] = []

    def make(session: str) -> k8s.CustomObjectsApi:
        pod = sessions.pod(session)
        assert pod is not None
        assert pod.spec is not None
        account = pod.spec.service_account_name
        assert account is not None
        path = control_plane.kubeconfig_for_service_account(namespace, account)
        api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(path))
        clients.append(api)
        return k8s.CustomObjectsApi(api)

    yield make
    for api in clients:
        api.close()


def _watch_status(custom: k8s.CustomObjectsApi, namespace: str, selector: str | None) -> Any:
    """The first event of a watch of sessions (an ADDED for what exists), or the HTTP status
    the API server refused it with."""
    stream = k8s_watch.Watch().stream(
        custom.list_namespaced_custom_object, GROUP, VERSION, namespace, AVATAR_SESSION.plural,
        field_selector=selector, timeout_seconds=5,
    )  # fmt: skip
    try:
        for event in stream:
            return event["object"]["metadata"]["name"]
    except k8s.ApiException as error:
        return error.status
    return None


def test_a_worker_may_watch_its_own_session_and_no_other(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    worker_custom_api: Any,
) -> None:  # fmt: skip
    gpu_nodes(2)
    sessions.create_tenant()
    name = sessions.create()
    other = sessions.create()  # bound to a worker of its own
    mine = sessions.wait_pod_running(name)
    theirs = sessions.wait_pod_running(other)
    assert mine.metadata is not None
    assert theirs.metadata is not None
    assert mine.metadata.name != theirs.metadata.name
    worker = worker_custom_api(name)
    namespace = sessions.namespace
    # The operator writes the worker's grant just after the binding: watch once it has.
    wait_for(
        lambda: _watch_status(worker, namespace, f"metadata.name={name}") == name,
        timeout=30,
        description="the worker's watch of its own session",
    )
    assert _watch_status(worker, namespace, f"metadata.name={other}") == 403
    assert _watch_status(worker, namespace, None) == 403
