"""A pool worker's grant, as the pool controller builds it (`pool_objects`), enforced by the real
API server: SubjectAccessReviews for the worker's account, then real calls with a token of it
(TokenRequest, as the kubelet mounts). The worker reaches the sessions bound to it (their
status, their token Secret, their avatar) and its own Role, and nothing else; rewriting the
Role takes a session away."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any, cast

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from avatar_crds import contract
from avatar_crds.ids import AVATAR_PREFIX, new_public_id, to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, WORKER_POOL
from avatar_crds.meta import GROUP, VERSION
from avatar_crds.pool import WorkerPool
from avatar_operator.pool_objects import (
    GrantedSession,
    grant_rules,
    worker_account,
    worker_role,
    worker_role_binding,
)
from testbed.controlplane import ControlPlane
from testbed.objects import avatar_manifest
from testbed.sessions import Sessions
from testbed.wait import wait_for

pytestmark = pytest.mark.controlplane

RBAC = "rbac.authorization.k8s.io"
Check = tuple[str, str, str, str]  # verb, API group, resource[/subresource], name ("" = any)


@dataclass(frozen=True)
class Granted:
    namespace: str
    account: str
    a: str
    b: str
    avatar: str


def _custom(api_client: k8s.ApiClient) -> k8s.CustomObjectsApi:
    return k8s.CustomObjectsApi(api_client)


@pytest.fixture
def granted(crds: None, api_client: k8s.ApiClient, namespace: str, sessions: Sessions) -> Granted:
    """A pool, a worker's identity made by the builders with session A bound to it, and
    session B bound to no one; both sessions' token Secrets and their avatar exist."""
    body = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": WORKER_POOL.kind,
        "metadata": {"name": f"lite-{uuid.uuid4().hex[:6]}"},
        "spec": {"qualities": ["mock"], "worker": {"image": "w:1"}, "maxWorkers": 1},
    }
    # A real owner: objects whose owner does not exist are garbage-collected.
    pool = WorkerPool.model_validate(
        _custom(api_client).create_namespaced_custom_object(
            GROUP, VERSION, namespace, WORKER_POOL.plural, body
        )
    )
    avatar_id = new_public_id(AVATAR_PREFIX)
    avatar = to_resource_name(avatar_id, AVATAR_PREFIX)
    _custom(api_client).create_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR.plural, avatar_manifest(avatar_id, "acme")
    )
    a, b = sessions.create(avatarRef=avatar), sessions.create(avatarRef=avatar)
    core = k8s.CoreV1Api(api_client)
    for session in (a, b):
        secret = k8s.V1Secret(
            metadata=k8s.V1ObjectMeta(name=contract.token_secret_name(session)),
            string_data={contract.TOKEN_SECRET_KEY: f"token-of-{session}"},
        )
        core.create_namespaced_secret(namespace, secret)
    rbac = k8s.RbacAuthorizationV1Api(api_client)
    account_body = k8s.V1ServiceAccount.model_validate(worker_account(pool))
    made = core.create_namespaced_service_account(namespace, account_body)
    assert made.metadata is not None
    account = made.metadata.name
    assert account is not None
    a_body = _custom(api_client).get_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR_SESSION.plural, a
    )
    role = worker_role(pool, account, [GrantedSession.of(cast(dict[str, Any], a_body))])
    rbac.create_namespaced_role(namespace, k8s.V1Role.model_validate(role))
    binding = k8s.V1RoleBinding.model_validate(worker_role_binding(pool, account))
    rbac.create_namespaced_role_binding(namespace, binding)
    return Granted(namespace, account, a, b, avatar)


def allowed(api_client: k8s.ApiClient, who: Granted, check: Check) -> bool:
    verb, group, resource, name = check
    resource, _, subresource = resource.partition("/")
    review = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{who.namespace}:{who.account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{who.namespace}",
                    "system:authenticated"],
            resource_attributes=k8s.V1ResourceAttributes(
                verb=verb, group=group, resource=resource, subresource=subresource or None,
                name=name or None, namespace=who.namespace,
            ),
        )
    )  # fmt: skip
    answer = k8s.AuthorizationV1Api(api_client).create_subject_access_review(review)
    assert answer.status is not None
    return bool(answer.status.allowed)


def test_the_grant_reaches_the_bound_session_and_nothing_else(
    api_client: k8s.ApiClient, granted: Granted
) -> None:
    g = granted
    may: list[Check] = [
        ("get", GROUP, "avatarsessions", g.a),
        ("watch", GROUP, "avatarsessions", g.a),
        ("get", GROUP, "avatarsessions/status", g.a),
        ("patch", GROUP, "avatarsessions/status", g.a),
        ("get", "", "secrets", contract.token_secret_name(g.a)),
        ("get", GROUP, "avatars", g.avatar),
        ("get", RBAC, "roles", g.account),
        ("watch", RBAC, "roles", g.account),
    ]
    may_not: list[Check] = [
        ("get", GROUP, "avatarsessions", g.b),
        ("patch", GROUP, "avatarsessions/status", g.b),
        ("get", "", "secrets", contract.token_secret_name(g.b)),
        ("list", GROUP, "avatarsessions", ""),
        ("watch", GROUP, "avatarsessions", ""),
        ("patch", GROUP, "avatarsessions", g.a),  # the spec is not the worker's
        ("list", "", "secrets", ""),
        ("get", "", "secrets", "webhook-signing"),
        ("list", GROUP, "avatars", ""),
        ("patch", RBAC, "roles", g.account),  # not even its own grant
        ("patch", RBAC, "roles", "facecast-operator"),
        ("get", RBAC, "roles", "facecast-operator"),
        ("list", RBAC, "roles", ""),
        ("list", "", "pods", ""),
    ]
    denied = [c for c in may if not allowed(api_client, g, c)]
    granted_wrongly = [c for c in may_not if allowed(api_client, g, c)]
    assert not denied, f"the worker may not: {denied}"
    assert not granted_wrongly, f"the worker may: {granted_wrongly}"


def status_of(call: Callable[..., Any], *args: Any, **kwargs: Any) -> int:
    try:
        call(*args, **kwargs)
    except k8s.ApiException as error:
        return int(error.status)
    return 200


@pytest.fixture
def as_worker(control_plane: ControlPlane, granted: Granted) -> Iterator[k8s.ApiClient]:
    path = control_plane.kubeconfig_for_service_account(granted.namespace, granted.account)
    api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(path))
    yield api
    api.close()


def test_real_calls_with_the_workers_token(
    api_client: k8s.ApiClient, granted: Granted, as_worker: k8s.ApiClient
) -> None:
    g = granted
    custom, core = k8s.CustomObjectsApi(as_worker), k8s.CoreV1Api(as_worker)
    rbac = k8s.RbacAuthorizationV1Api(as_worker)
    sessions = (GROUP, VERSION, g.namespace, AVATAR_SESSION.plural)

    assert status_of(custom.get_namespaced_custom_object, *sessions, g.a) == 200
    assert status_of(custom.get_namespaced_custom_object, *sessions, g.b) == 403
    assert status_of(custom.list_namespaced_custom_object, *sessions) == 403
    token = core.read_namespaced_secret(contract.token_secret_name(g.a), g.namespace)
    assert token.data is not None
    assert contract.TOKEN_SECRET_KEY in token.data
    b_token = contract.token_secret_name(g.b)
    assert status_of(core.read_namespaced_secret, b_token, g.namespace) == 403
    assert status_of(core.list_namespaced_secret, g.namespace) == 403
    avatars = (GROUP, VERSION, g.namespace, AVATAR.plural)
    assert status_of(custom.get_namespaced_custom_object, *avatars, g.avatar) == 200

    # Its reports go into status.worker of its own session only (the admission policy
    # matches a pool worker's account as it does a session's own worker).
    report = {"status": {"worker": {"heartbeatAt": "2030-01-01T00:00:00Z", "frames": 1}}}
    patch = custom.patch_namespaced_custom_object_status
    assert status_of(patch, *sessions, g.a, report) == 200
    assert status_of(patch, *sessions, g.b, report) == 403
    ended = {"status": {"phase": "ended", "reason": "user_ended"}}
    wait_for(
        lambda: status_of(patch, *sessions, g.a, ended, dry_run="All") == 403,
        timeout=30,
        description="the worker-status policy in force for a pool worker's account",
    )

    # Its own grant: read, and watched by name, which is how the worker follows it.
    assert status_of(rbac.read_namespaced_role, g.account, g.namespace) == 200
    watched: Any = rbac.list_namespaced_role(
        g.namespace,
        field_selector=f"metadata.name={g.account}",
        watch=True,
        timeout_seconds=1,
        _preload_content=False,
    )
    assert watched.status == 200
    watched.release_conn()
    assert status_of(rbac.list_namespaced_role, g.namespace) == 403
    assert status_of(rbac.patch_namespaced_role, g.account, g.namespace, {"rules": []}) == 403

    # The operator rewrites the grant when A leaves: the worker loses A at once.
    k8s.RbacAuthorizationV1Api(api_client).patch_namespaced_role(
        g.account, g.namespace, {"rules": grant_rules(g.account, [])}
    )
    wait_for(
        lambda: status_of(custom.get_namespaced_custom_object, *sessions, g.a) == 403,
        timeout=10,
        description="session A out of the worker's reach",
    )
    assert (
        status_of(core.read_namespaced_secret, contract.token_secret_name(g.a), g.namespace) == 403
    )
    assert status_of(rbac.read_namespaced_role, g.account, g.namespace) == 200
