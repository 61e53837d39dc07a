"""What a session may reach, enforced by the real API server, the operator and the pool worker:
its own token Secret and nothing else (the CRD's CEL rule on the name; the grant the operator
writes for the pool worker the session is bound to, by name; the worker's ownership check of
the Secret it reads, `avatar_worker.pool.token`), and a worker that writes `status.worker` and
nothing else (the admission policy installed with the CRDs), tried with the pool worker's own
ServiceAccount token. Each session gets a cold pool worker of its own (the
`worker_per_session` fixture); kwok runs no worker process, so the worker's own token reader is
called here with its account's token."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from avatar_crds import contract
from avatar_crds.enums import FailureReason
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from avatar_crds.policy import POLICY_NAME, protected_fields
from avatar_worker.errors import WorkerError
from avatar_worker.pool.token import SecretToken
from testbed.controlplane import ControlPlane
from testbed.kwok import GpuNodeFactory
from testbed.operator_process import OperatorProcess
from testbed.sessions import AVATAR, Sessions
from testbed.wait import wait_for
from tests.integration.worker_standin import WorkerStandIn

VICTIM_CONTENT = "-----BEGIN PRIVATE KEY----- the platform's TLS key"

pytestmark = pytest.mark.usefixtures("worker_per_session")


def session_body(name: str, secret: str) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AvatarSession",
        "metadata": {"name": name},
        "spec": {
            "tenant": "acme",
            "avatarRef": AVATAR,
            "quality": "mock",
            "transport": {
                "type": "livekit",
                "livekit": {"url": "wss://attacker.example", "roomName": "r"},
            },
            "tokenSecretRef": {"name": secret},
        },
    }


def create_secret(
    core: k8s.CoreV1Api, namespace: str, name: str, token: str = VICTIM_CONTENT, **meta: Any
) -> None:
    body = k8s.V1Secret(
        metadata=k8s.V1ObjectMeta(name=name, **meta),
        string_data={contract.TOKEN_SECRET_KEY: token},
    )
    core.create_namespaced_secret(namespace, body)


def test_kubectl_cannot_create_a_session_naming_another_secret(
    crds: None, testenv_bin: Path, kubeconfig: Path, api_client: k8s.ApiClient, namespace: str
) -> None:
    create_secret(k8s.CoreV1Api(api_client), namespace, "victim")
    done = subprocess.run(
        [str(testenv_bin / "kubectl"), f"--kubeconfig={kubeconfig}", "-n", namespace,
         "create", "-f", "-"],
        input=json.dumps(session_body("sess-a", "victim")), capture_output=True, text=True,
        check=False,
    )  # fmt: skip
    assert done.returncode != 0
    assert "must be the session's own token Secret" in done.stderr
    # The same through a client, and with the name of another session's Secret.
    custom = k8s.CustomObjectsApi(api_client)
    for secret in ("victim", contract.token_secret_name("sess-b")):
        with pytest.raises(k8s.ApiException) as refused:
            custom.create_namespaced_custom_object(
                GROUP, VERSION, namespace, AVATAR_SESSION.plural, session_body("sess-a", secret)
            )
        assert refused.value.status == 422
    # Its own Secret's name is accepted.
    body = session_body("sess-a", contract.token_secret_name("sess-a"))
    custom.create_namespaced_custom_object(GROUP, VERSION, namespace, AVATAR_SESSION.plural, body)


def worker_client(control_plane: ControlPlane, sessions: Sessions, session: str) -> k8s.ApiClient:
    """A client holding a fresh token (TokenRequest) of the ServiceAccount of the pool worker
    the session is bound to, as the kubelet mounts it into that worker's pod."""
    pod = sessions.wait_pod_running(session)
    assert pod.spec is not None
    account = pod.spec.service_account_name
    assert account is not None
    path = control_plane.kubeconfig_for_service_account(sessions.namespace, account)
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(path))
    return api


def read_token(api: k8s.ApiClient, sessions: Sessions, session: str) -> str:
    """The session's room token as its pool worker reads it: its own reader, its own account."""
    found = sessions.get(session)
    assert found is not None
    return SecretToken(api, sessions.namespace, session, found.metadata.uid)()


def wait_granted(api: k8s.ApiClient, sessions: Sessions, session: str) -> None:
    """Until the operator has written the worker's grant for the session (just after binding)."""
    secret = contract.token_secret_name(session)
    wait_for(
        lambda: (
            status_of(k8s.CoreV1Api(api).read_namespaced_secret, secret, sessions.namespace) == 200
        ),
        timeout=30,
        description=f"the worker granted {secret}",
    )


def status_of(call: Callable[..., Any], *args: Any) -> int:
    try:
        call(*args)
    except k8s.ApiException as error:
        return int(error.status)
    return 200


def mounts_no_token(pod: k8s.V1Pod) -> bool:
    """A pool worker's pod mounts no session's Secret: it reads each through its grant."""
    assert pod.spec is not None
    return not any(volume.secret is not None for volume in pod.spec.volumes or [])


@pytest.mark.parametrize("forgery", ["unowned", "owned_by_another_session", "unlabelled"])
def test_a_worker_never_uses_a_secret_the_session_does_not_own(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    control_plane: ControlPlane, forgery: str,
) -> None:  # fmt: skip
    """A Secret with the session's token name that someone else made, or that another
    session owns (one of the same name before it, awaiting garbage collection), is refused by
    the pool worker that reads it (transport_auth_failed), though its grant reaches it by
    name; nothing of its content reaches an error or a log."""
    gpu_nodes(2)  # the other session takes a worker and its GPU too
    sessions.create_tenant()
    name = "sess-01jcz3v7m4q8r2t6w9x0y1z2b4"
    secret = contract.token_secret_name(name)
    labels = {contract.LABEL_SESSION: name, contract.LABEL_MANAGED_BY: contract.MANAGED_BY}
    if forgery == "unowned":
        create_secret(sessions.core, sessions.namespace, secret, labels=labels)
        _create_named(sessions, name)
    elif forgery == "owned_by_another_session":
        # Owned by a session that exists (the garbage collector would remove a Secret whose
        # owner does not), labelled for this one.
        other = _create_named(sessions, "sess-01jcz3v7m4q8r2t6w9x0y1z2d6")
        create_secret(
            sessions.core, sessions.namespace, secret, labels=labels,
            owner_references=[_owner(other)],
        )  # fmt: skip
        _create_named(sessions, name)
    else:
        # Owned by this very session, but not labelled as its token: not the API's.
        create_secret(sessions.core, sessions.namespace, secret)
        created = _create_named(sessions, name)
        sessions.core.patch_namespaced_secret(
            secret, sessions.namespace, {"metadata": {"ownerReferences": [_owner(created)]}}
        )

    with worker_client(control_plane, sessions, name) as api:
        wait_granted(api, sessions, name)
        with pytest.raises(WorkerError) as refused:
            read_token(api, sessions, name)
    assert refused.value.reason == FailureReason.TRANSPORT_AUTH_FAILED
    assert secret in refused.value.message
    assert "refusing to use it" in refused.value.message
    assert VICTIM_CONTENT not in str(refused.value)
    pod = sessions.pod(name)
    assert pod is not None
    assert mounts_no_token(pod)
    assert VICTIM_CONTENT not in operator.log_tail(2000)


def _owner(session: dict[str, Any]) -> dict[str, Any]:
    return {
        "apiVersion": API_VERSION,
        "kind": "AvatarSession",
        "name": session["metadata"]["name"],
        "uid": session["metadata"]["uid"],
        "controller": True,
    }


def _create_named(sessions: Sessions, name: str) -> dict[str, Any]:
    body = session_body(name, contract.token_secret_name(name))
    body["spec"]["transport"]["livekit"]["url"] = "ws://127.0.0.1:7880"
    created = sessions.custom.create_namespaced_custom_object(
        GROUP, VERSION, sessions.namespace, AVATAR_SESSION.plural, body
    )
    return cast(dict[str, Any], created)


def test_a_worker_reads_the_secret_its_session_owns_and_no_other(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    control_plane: ControlPlane,
) -> None:  # fmt: skip
    gpu_nodes(2)
    sessions.create_tenant()
    labels = {contract.LABEL_MANAGED_BY: contract.MANAGED_BY}
    names = ("sess-01jcz3v7m4q8r2t6w9x0y1z2c5", "sess-01jcz3v7m4q8r2t6w9x0y1z2e7")
    for name in names:
        created = _create_named(sessions, name)
        create_secret(
            sessions.core, sessions.namespace, contract.token_secret_name(name),
            labels={**labels, contract.LABEL_SESSION: name}, owner_references=[_owner(created)],
            token=f"room-token-of-{name}",
        )  # fmt: skip
    mine, theirs = names
    with worker_client(control_plane, sessions, mine) as api:
        wait_granted(api, sessions, mine)
        assert read_token(api, sessions, mine) == f"room-token-of-{mine}"
        # The other session's token, on another worker, is out of this worker's reach.
        sessions.wait_phase(theirs, "starting")
        with pytest.raises(WorkerError) as refused:
            read_token(api, sessions, theirs)
    assert refused.value.reason == FailureReason.TRANSPORT_AUTH_FAILED
    assert "403" in refused.value.message
    pod = sessions.pod(mine)
    assert pod is not None
    assert mounts_no_token(pod)


# --- the worker's status writes ------------------------------------------------------------


@pytest.fixture
def as_worker(control_plane: ControlPlane, sessions: Sessions) -> Iterator[Any]:
    """A client holding a fresh token of the ServiceAccount of a session's pool worker."""
    clients: list[k8s.ApiClient] = []

    def make(session: str) -> k8s.CustomObjectsApi:
        api = worker_client(control_plane, sessions, session)
        clients.append(api)
        return k8s.CustomObjectsApi(api)

    yield make
    for api in clients:
        api.close()


def _patch_status(
    custom: k8s.CustomObjectsApi, namespace: str, name: str, status: dict[str, Any],
    dry_run: bool = False,
) -> int:  # fmt: skip
    try:
        custom.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, AVATAR_SESSION.plural, name, {"status": status},
            dry_run="All" if dry_run else None,
        )  # fmt: skip
    except k8s.ApiException as error:
        return int(error.status)
    return 200


def test_a_worker_may_write_status_worker_and_nothing_else(
    operator: OperatorProcess, sessions: Sessions, gpu_nodes: GpuNodeFactory,
    api_client: k8s.ApiClient, as_worker: Any,
) -> None:  # fmt: skip
    gpu_nodes(1)
    sessions.create_tenant()
    name = sessions.create()
    worker = as_worker(name)  # once the session is bound to its pool worker
    namespace = sessions.namespace
    # The operator grants the worker its session just after binding it: until then RBAC
    # refuses every write (403 too), so the policy is looked at only once the grant is in.
    heartbeat = {"heartbeatAt": "2030-01-01T00:00:00Z", "frames": 1}
    wait_for(
        lambda: _patch_status(worker, namespace, name, {"worker": heartbeat}) == 200,
        timeout=30,
        description="the worker granted its session's status",
    )
    # The policy is checked by the API server as soon as its informer has it; dry runs pass
    # through admission without writing anything. (A valid status, or the CRD's schema
    # refuses it first, with 422.)
    ended = {"phase": "ended", "reason": "user_ended"}
    wait_for(
        lambda: _patch_status(worker, namespace, name, ended, dry_run=True) == 403,
        timeout=30,
        description="the worker-status policy in force",
    )
    before = sessions.get(name)
    assert before is not None
    assert before.status.worker is not None
    assert before.status.worker.frames == 1

    forged: list[dict[str, Any]] = [
        {"phase": "ended", "reason": "user_ended"},
        {"deadlines": {"startBy": "2099-01-01T00:00:00Z"}},
        {"usage": {"billableSeconds": 0.5}},
        {"queuedAt": None},  # removing a field is changing it too
        {"worker": {"frames": 2}, "message": "a worker's status write that strays"},
    ]
    for status in forged:
        assert _patch_status(worker, namespace, name, status) == 403, status
    after = sessions.get(name)
    assert after is not None
    assert after.status.model_dump(exclude={"worker"}) == before.status.model_dump(
        exclude={"worker"}
    )
    assert after.status.worker == before.status.worker

    # The operator's own writes are not the worker's: the session still goes on.
    WorkerStandIn(api_client, namespace, name).first_frame()
    sessions.wait_phase(name, "running")


def test_the_policy_protects_every_status_field_but_the_worker_s(
    crds: None, api_client: k8s.ApiClient
) -> None:
    policy = k8s.AdmissionregistrationV1Api(api_client).read_validating_admission_policy(
        POLICY_NAME
    )
    assert policy.spec is not None
    assert policy.spec.validations
    message = policy.spec.validations[0].message or ""
    assert "status.worker" in message
    for field in ("phase", "deadlines", "usage", "reason", "finishedAt", "pendingWebhooks"):
        assert field in protected_fields()
        assert f"status.{field}" in message
    assert "worker" not in protected_fields()
    # The API server type-checked every expression without a warning.
    checking = policy.status.type_checking if policy.status else None
    assert not (checking and checking.expression_warnings)
