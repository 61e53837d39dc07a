"""The contract's side of a session's boundaries: it names only its own token Secret (the
root CEL rule and its pydantic twin), and the worker-status admission policy protects every
status field but the worker's, read from the model."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from pydantic import ValidationError

from avatar_crds import contract
from avatar_crds.cel import VALIDATIONS_KEY
from avatar_crds.crd import crd_manifest
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.policy import policy_manifests, policy_spec, protected_fields, worker_field
from avatar_crds.session import OWN_TOKEN_SECRET, AvatarSession, AvatarSessionStatus

NAME = "sess-01jcz3v7m4q8r2t6w9x0y1z2a3"


def body(spec: dict[str, Any], name: str | None = NAME) -> dict[str, Any]:
    return {"metadata": {"name": name} if name else {}, "spec": spec}


def test_a_session_names_its_own_token_secret(
    make_session_spec: Callable[..., dict[str, Any]],
) -> None:
    own = make_session_spec(tokenSecretRef={"name": contract.token_secret_name(NAME)})
    assert AvatarSession.model_validate(body(own)).spec.token_secret_ref.name == f"{NAME}-token"
    for other in ("victim", contract.token_secret_name("sess-01jcz3v7m4q8r2t6w9x0y1z2b4")):
        with pytest.raises(ValidationError, match="the session's own token Secret"):
            AvatarSession.model_validate(body(make_session_spec(tokenSecretRef={"name": other})))


def test_the_rule_sits_at_the_root_where_cel_may_read_the_name() -> None:
    schema = crd_manifest(AVATAR_SESSION)["spec"]["versions"][0]["schema"]["openAPIV3Schema"]
    assert schema[VALIDATIONS_KEY] == [OWN_TOKEN_SECRET.as_schema()]
    assert "self.metadata.name" in OWN_TOKEN_SECRET.rule
    assert f"'{contract.TOKEN_SECRET_SUFFIX}'" in OWN_TOKEN_SECRET.rule


def test_the_policy_lets_workers_write_only_their_own_field() -> None:
    assert worker_field() == "worker"
    aliases = {field.alias or name for name, field in AvatarSessionStatus.model_fields.items()}
    assert set(protected_fields()) == aliases - {"worker"}
    assert {"phase", "deadlines", "usage", "reason", "pendingWebhooks"} <= set(protected_fields())
    spec = policy_spec()
    (condition,) = spec["matchConditions"]
    assert f"'{contract.WORKER_ACCOUNT_PATTERN}'" in condition["expression"]
    assert spec["matchConstraints"]["resourceRules"][0]["resources"] == [
        f"{AVATAR_SESSION.plural}/status"
    ]
    assert spec["failurePolicy"] == "Fail"
    policy, binding = policy_manifests()
    assert binding["spec"]["policyName"] == policy["metadata"]["name"]
    assert binding["spec"]["validationActions"] == ["Deny"]
