"""The generated CRDs on the real kube-apiserver: it enforces the schema and the CEL rules
itself, and kubectl shows the printer columns."""

from __future__ import annotations

import subprocess
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, cast

import pytest
from kubernetes import client as k8s

from avatar_crds import contract, ids
from avatar_crds.kinds import AVATAR_SESSION
from avatar_crds.meta import API_VERSION, GROUP, VERSION
from testbed.controlplane import ControlPlane
from testbed.sessions import AVATAR


def session(**spec: Any) -> dict[str, Any]:
    # A fresh name each time: the token Secret's name must be the session's own.
    name = ids.to_resource_name(ids.new_public_id(ids.SESSION_PREFIX), ids.SESSION_PREFIX)
    base: dict[str, Any] = {
        "tenant": "acme",
        "avatarRef": AVATAR,
        "quality": "lite",
        "transport": {"type": "livekit", "livekit": {"url": "wss://lk.example", "roomName": "r"}},
        "tokenSecretRef": {"name": contract.token_secret_name(name)},
    }
    return {"apiVersion": API_VERSION, "kind": "AvatarSession",
            "metadata": {"name": name}, "spec": {**base, **spec}}  # fmt: skip


def create(api_client: k8s.ApiClient, namespace: str, body: dict[str, Any]) -> dict[str, Any]:
    api = k8s.CustomObjectsApi(api_client)
    created = api.create_namespaced_custom_object(
        GROUP, VERSION, namespace, AVATAR_SESSION.plural, body
    )
    return cast(dict[str, Any], created)


def test_valid_session_is_accepted_with_defaults(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    created = create(api_client, namespace, session())
    spec = created["spec"]
    assert spec["idleTimeoutSeconds"] == 30
    assert spec["maxDurationSeconds"] == 600
    assert spec["aspectRatio"] == "4:3"
    assert spec["transport"]["livekit"]["workerIdentity"] == "facecast-worker"


def test_null_idle_timeout_survives_as_disabled(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    created = create(api_client, namespace, session(idleTimeoutSeconds=None))
    assert "idleTimeoutSeconds" in created["spec"]
    assert created["spec"]["idleTimeoutSeconds"] is None


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"quality": "ultra"}, "supported values"),
        ({"idleTimeoutSeconds": 601}, "less than or equal to 600"),
        ({"maxDurationSeconds": 0}, "greater than or equal to 1"),
        ({"voice": {"id": "v", "speed": 3}}, "less than or equal to 2"),
        ({"avatarRef": "av_01JCZ"}, "should match"),
        ({"transport": {"type": "livekit"}}, "exactly the transport named by type"),
        ({"video": {"width": 640}}, "width and height must be set together"),
    ],
)
def test_api_server_rejects_what_breaks_the_schema_or_a_cel_rule(
    crds: None, api_client: k8s.ApiClient, namespace: str, spec: dict[str, Any], message: str
) -> None:
    with pytest.raises(k8s.ApiException) as caught:
        create(api_client, namespace, session(**spec))
    assert caught.value.status == 422
    assert message in str(caught.value.body)


def test_immutable_fields_and_the_end_request_rule(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    api = k8s.CustomObjectsApi(api_client)
    name = create(api_client, namespace, session())["metadata"]["name"]

    def patch(spec: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object(
            GROUP, VERSION, namespace, AVATAR_SESSION.plural, name, {"spec": spec}
        )

    with pytest.raises(k8s.ApiException, match="immutable"):
        patch({"quality": "pro"})
    patch({"endRequestedAt": datetime.now(UTC).isoformat()})
    with pytest.raises(k8s.ApiException, match="cannot be changed or removed"):
        patch({"endRequestedAt": None})


def test_status_rule_terminal_phase_needs_its_reason(
    crds: None, api_client: k8s.ApiClient, namespace: str
) -> None:
    api = k8s.CustomObjectsApi(api_client)
    name = create(api_client, namespace, session())["metadata"]["name"]

    def status(body: dict[str, Any]) -> None:
        api.patch_namespaced_custom_object_status(
            GROUP, VERSION, namespace, AVATAR_SESSION.plural, name, {"status": body}
        )

    with pytest.raises(k8s.ApiException, match="needs a reason"):
        status({"phase": "failed", "reason": "idle_timeout"})
    status({"phase": "failed", "reason": "node_lost"})


def test_printer_columns_come_back_through_kubectl(
    crds: None, control_plane: ControlPlane, testenv_bin: Path, api_client: k8s.ApiClient,
    namespace: str,
) -> None:  # fmt: skip
    create(api_client, namespace, session())
    out = subprocess.run(
        [str(testenv_bin / "kubectl"), f"--kubeconfig={control_plane.kubeconfig}",
         "-n", namespace, "get", "avs"],
        check=True, capture_output=True, text=True,
    ).stdout  # fmt: skip
    header = out.splitlines()[0].split()
    assert header == ["NAME", "PHASE", "AVATAR", "QUALITY", "AGE", "FIRST", "FRAME"]
    assert AVATAR in out
