"""The ValidatingAdmissionPolicy that keeps each session's worker inside `status.worker`.

RBAC can grant a worker `patch` on its session's status subresource but not on one field of
it; without this policy a worker (or whoever holds its token) could rewrite the phase, the
deadlines or the usage that billing trusts. The fields it may not touch are every field of
`AvatarSessionStatus` except the worker's own, read from the model, so a field added later
is protected without anyone remembering to list it.
"""

from __future__ import annotations

from typing import Any

from avatar_crds import contract
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import GROUP
from avatar_crds.session import AvatarSessionStatus, WorkerStatus

ADMISSION_API_VERSION = "admissionregistration.k8s.io/v1"
POLICY_NAME = "facecast-worker-status"


def _field_alias(model: type[AvatarSessionStatus], name: str) -> str:
    return model.model_fields[name].alias or name


def worker_field() -> str:
    """The one status field a worker writes: the one typed as the worker's report."""
    (name,) = [
        name
        for name, field in AvatarSessionStatus.model_fields.items()
        if WorkerStatus in (field.annotation, *getattr(field.annotation, "__args__", ()))
    ]
    return _field_alias(AvatarSessionStatus, name)


def protected_fields() -> list[str]:
    """Every status field but the worker's, as the API server spells them."""
    own = worker_field()
    aliases = [_field_alias(AvatarSessionStatus, name) for name in AvatarSessionStatus.model_fields]
    return [alias for alias in aliases if alias != own]


def policy_spec() -> dict[str, Any]:
    """The policy's `spec`: shared by the chart's template and the test environment."""
    own = worker_field()
    # A worker's ServiceAccount is `<session>-worker`, or a pool worker's `<pool>-worker-<random>`
    # (`contract.WORKER_ACCOUNT_PATTERN`), in the session's namespace. Matching every such
    # account (not only the session's own) costs nothing: RBAC already limits each to the
    # sessions it serves.
    account = (
        "request.userInfo.username.startsWith("
        "'system:serviceaccount:' + request.namespace + ':')"
        f" && request.userInfo.username.matches('{contract.WORKER_ACCOUNT_PATTERN}')"
    )
    # Status as maps (absent: empty) so that a field appearing, changing or disappearing
    # are one comparison; `dyn` because the type checker knows status as a typed object,
    # whose keys cannot be iterated.
    unchanged = (
        f"variables.new.all(k, k == '{own}' || (k in variables.old"
        " && variables.new[k] == variables.old[k]))"
        f" && variables.old.all(k, k == '{own}' || k in variables.new)"
    )
    return {
        "failurePolicy": "Fail",
        "matchConstraints": {
            "resourceRules": [
                {
                    "apiGroups": [GROUP],
                    "apiVersions": ["*"],
                    "operations": ["UPDATE"],
                    "resources": [f"{AVATAR_SESSION.plural}/status"],
                }
            ]
        },
        "matchConditions": [{"name": "session-workers", "expression": account}],
        "variables": [
            {
                "name": "old",
                "expression": "has(oldObject.status) ? dyn(oldObject.status) : dyn({})",
            },
            {"name": "new", "expression": "has(object.status) ? dyn(object.status) : dyn({})"},
        ],
        "validations": [
            {
                "expression": unchanged,
                "message": f"a session's worker may write only status.{own}, not "
                + ", ".join(f"status.{field}" for field in protected_fields()),
                "reason": "Forbidden",
            }
        ],
    }


def policy_manifests(name: str = POLICY_NAME) -> list[dict[str, Any]]:
    """The policy and a binding that denies, in every namespace (the test environment's)."""
    policy = {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "ValidatingAdmissionPolicy",
        "metadata": {"name": name},
        "spec": policy_spec(),
    }
    binding = {
        "apiVersion": ADMISSION_API_VERSION,
        "kind": "ValidatingAdmissionPolicyBinding",
        "metadata": {"name": name},
        "spec": {"policyName": name, "validationActions": ["Deny"]},
    }
    return [policy, binding]
