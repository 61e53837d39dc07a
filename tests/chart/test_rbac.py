"""The installed chart's RBAC, asked of the real API server: SubjectAccessReviews for the
operator's and the API's ServiceAccounts (what they may and may not do, here and in another
namespace), then real calls made with their tokens.

That the operator can do its whole job with exactly these rights is shown end to end in
test_install.py, where it runs with its own token."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from kubernetes import client as k8s
from kubernetes import config as k8s_config

from avatar_crds.meta import GROUP, VERSION
from testbed.controlplane import ControlPlane
from tests.chart.conftest import Release
from tests.chart.rendering import API, FULLNAME, OPERATOR

pytestmark = pytest.mark.controlplane

OTHER = "default"  # another namespace: nothing may be touched there
Check = tuple[str, str, str, str]  # verb, API group, resource[/subresource], namespace marker

OPERATOR_MAY: list[Check] = [
    *[(v, GROUP, "avatarsessions", "") for v in ("get", "list", "watch", "patch", "delete")],
    *[(v, GROUP, "avatarsessions/status", "") for v in ("get", "patch")],
    *[(v, GROUP, "tenants", "") for v in ("get", "list", "watch")],
    ("update", GROUP, "tenants/status", ""),
    ("get", GROUP, "avatars", ""),
    *[(v, "", "pods", "") for v in ("get", "list", "watch", "create", "patch", "delete")],
    # The pool controller: pools and their status, each pool worker's identity and grant.
    *[(v, GROUP, "workerpools", "") for v in ("get", "list", "watch")],
    ("patch", GROUP, "workerpools/status", ""),
    *[(v, "", "serviceaccounts", "") for v in ("list", "create", "delete")],
    *[
        (v, "rbac.authorization.k8s.io", "roles", "")
        for v in ("get", "watch", "create", "patch", "delete")
    ],
    *[(v, "rbac.authorization.k8s.io", "rolebindings", "") for v in ("create", "delete")],
    ("get", "", "secrets", ""),
    ("create", "", "events", ""),
    *[(v, "kopf.dev", "kopfpeerings", "") for v in ("get", "list", "watch", "patch")],
    *[(v, "", "nodes", "cluster") for v in ("get", "list", "watch")],
]
OPERATOR_MAY_NOT: list[Check] = [
    *[(v, "", "secrets", "") for v in ("list", "watch", "create", "update", "patch", "delete")],
    ("create", GROUP, "avatarsessions", ""),
    ("update", GROUP, "avatarsessions", ""),
    ("update", GROUP, "tenants", ""),
    ("patch", GROUP, "tenants", ""),
    ("delete", GROUP, "tenants", ""),
    ("create", "", "pods/exec", ""),
    *[(v, GROUP, "workerpools", "") for v in ("create", "update", "patch", "delete")],
    ("escalate", "rbac.authorization.k8s.io", "roles", ""),
    ("bind", "rbac.authorization.k8s.io", "roles", ""),
    ("list", "rbac.authorization.k8s.io", "roles", ""),
    ("create", "rbac.authorization.k8s.io", "clusterroles", "cluster"),
    ("patch", "", "nodes", "cluster"),
    ("list", "", "configmaps", ""),
    # Another namespace: nothing at all. Nor pods cluster-wide: the scheduler places workers.
    *[(v, GROUP, "avatarsessions", OTHER) for v in ("get", "list", "patch", "delete")],
    *[(v, "", "pods", OTHER) for v in ("get", "list", "watch", "create", "delete", "patch")],
    *[(v, "", "pods", "cluster") for v in ("get", "list", "watch")],
    ("get", "", "secrets", OTHER),
    ("create", "", "events", OTHER),
    ("create", "", "serviceaccounts", OTHER),
    ("create", "rbac.authorization.k8s.io", "roles", OTHER),
    ("list", "", "secrets", "cluster"),
]
API_MAY: list[Check] = [
    *[(v, GROUP, "avatarsessions", "") for v in ("get", "list", "watch", "create", "patch")],
    ("delete", GROUP, "avatarsessions", ""),
    *[(v, GROUP, "tenants", "") for v in ("get", "list")],
    *[(v, GROUP, "avatars", "") for v in ("get", "list", "watch", "create", "delete")],
    ("create", "", "secrets", ""),
]
API_MAY_NOT: list[Check] = [
    *[(v, "", "secrets", "") for v in ("get", "list", "watch", "update", "patch", "delete")],
    ("patch", GROUP, "avatarsessions/status", ""),
    ("update", GROUP, "tenants/status", ""),
    # api.rbac.tenantAdmin is off by default: tenants are managed from outside the API pods.
    *[(v, GROUP, "tenants", "") for v in ("create", "patch", "update", "delete")],
    *[(v, "", "pods", "") for v in ("get", "list", "create")],
    ("list", "", "nodes", "cluster"),
    *[(v, GROUP, "avatarsessions", OTHER) for v in ("get", "list", "create", "delete")],
    ("create", "", "secrets", OTHER),
    ("list", "", "secrets", "cluster"),
]


def allowed(api_client: k8s.ApiClient, namespace: str, account: str, check: Check) -> bool:
    verb, group, resource, where = check
    resource, _, subresource = resource.partition("/")
    attributes = k8s.V1ResourceAttributes(
        verb=verb,
        group=group,
        resource=resource,
        subresource=subresource or None,
        namespace=None if where == "cluster" else (where or namespace),
    )
    review = k8s.V1SubjectAccessReview(
        spec=k8s.V1SubjectAccessReviewSpec(
            user=f"system:serviceaccount:{namespace}:{account}",
            groups=["system:serviceaccounts", f"system:serviceaccounts:{namespace}",
                    "system:authenticated"],
            resource_attributes=attributes,
        )
    )  # fmt: skip
    answer = k8s.AuthorizationV1Api(api_client).create_subject_access_review(review)
    assert answer.status is not None
    return bool(answer.status.allowed)


def _describe(checks: list[Check]) -> str:
    return ", ".join(f"{v} {r}" + (f" in {w}" if w else "") for v, _, r, w in checks)


@pytest.mark.parametrize(
    ("account", "may", "may_not"),
    [(OPERATOR, OPERATOR_MAY, OPERATOR_MAY_NOT), (API, API_MAY, API_MAY_NOT)],
    ids=["operator", "api"],
)
def test_service_account_rights(
    release: Release,
    api_client: k8s.ApiClient,
    account: str,
    may: list[Check],
    may_not: list[Check],
) -> None:
    denied = [c for c in may if not allowed(api_client, release.namespace, account, c)]
    granted = [c for c in may_not if allowed(api_client, release.namespace, account, c)]
    assert not denied, f"{account} may not: {_describe(denied)}"
    assert not granted, f"{account} may: {_describe(granted)}"


@pytest.fixture
def as_account(control_plane: ControlPlane, release: Release) -> Iterator[Any]:
    clients: list[k8s.ApiClient] = []

    def make(account: str) -> k8s.ApiClient:
        path = control_plane.kubeconfig_for_service_account(release.namespace, account)
        api: k8s.ApiClient = k8s_config.new_client_from_config(config_file=str(path))
        clients.append(api)
        return api

    yield make
    for api in clients:
        api.close()


def status_of(call: Any, *args: Any, **kwargs: Any) -> int:
    try:
        call(*args, **kwargs)
    except k8s.ApiException as error:
        return int(error.status)
    return 200


def test_real_calls_with_the_accounts_tokens(
    release: Release, api_client: k8s.ApiClient, as_account: Any
) -> None:
    namespace = release.namespace
    k8s.CoreV1Api(api_client).create_namespaced_secret(
        namespace,
        k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="webhook-signing"), string_data={"k": "v"}),
    )
    operator = k8s.CoreV1Api(as_account(OPERATOR))
    api = k8s.CoreV1Api(as_account(API))

    # The operator reads the webhook signing Secret by name, and can never enumerate Secrets.
    assert status_of(operator.read_namespaced_secret, "webhook-signing", namespace) == 200
    assert status_of(operator.list_namespaced_secret, namespace) == 403
    assert status_of(operator.list_secret_for_all_namespaces) == 403
    assert status_of(operator.list_namespaced_pod, namespace) == 200
    # Pods of other namespaces are neither listed, read nor changed: no GPU accounting.
    assert status_of(operator.list_pod_for_all_namespaces) == 403
    assert status_of(operator.list_namespaced_pod, OTHER) == 403
    assert status_of(operator.read_namespaced_pod, "anything", OTHER) == 403
    assert status_of(operator.delete_namespaced_pod, "anything", OTHER) == 403
    assert status_of(operator.read_namespaced_secret, "anything", OTHER) == 403
    assert status_of(operator.list_node) == 200
    peering = k8s.CustomObjectsApi(as_account(OPERATOR))
    assert status_of(
        peering.get_namespaced_custom_object, "kopf.dev", "v1", namespace, "kopfpeerings",
        FULLNAME,
    ) == 200  # fmt: skip
    other_sessions = (GROUP, VERSION, OTHER, "avatarsessions")
    assert status_of(peering.list_namespaced_custom_object, *other_sessions) == 403

    # The API writes token Secrets but cannot read any back.
    secret = k8s.V1Secret(metadata=k8s.V1ObjectMeta(name="sess-x-token"), string_data={"t": "x"})
    assert status_of(api.create_namespaced_secret, namespace, secret) == 200
    assert status_of(api.read_namespaced_secret, "sess-x-token", namespace) == 403
    assert status_of(api.list_namespaced_secret, namespace) == 403
    assert status_of(api.create_namespaced_secret, OTHER, secret) == 403
    assert status_of(api.list_namespaced_pod, namespace) == 403
