"""Where the worker token goes when a session is made, against the real kube-apiserver:
into a Secret the AvatarSession owns, and into no response, resource, Event or log line;
a Secret that cannot be made leaves no session behind."""

from __future__ import annotations

import asyncio
import base64
import json
import time
import uuid
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from api_shim.kube import Kube
from api_shim.settings import Settings
from api_shim.tests.control_plane import WAIT_TIMEOUT, Cluster, RequestFactory, _create, error_of
from avatar_crds import contract
from avatar_crds.kinds import AVATAR, AVATAR_SESSION, TENANT
from avatar_crds.meta import GROUP, VERSION

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]


# --- create, and where the token goes ------------------------------------------------------------


async def test_create_makes_the_session_and_its_owned_token_secret(
    cluster: Cluster, make_request: RequestFactory, worker_token: str
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with cluster.api() as http:
        response = await _create(
            http, acme, make_request(avatar_id=avatar, metadata={"ticket": "T-1"})
        )
    assert response.status_code == 201, response.text
    session = response.json()
    assert session["id"].startswith("sess_")
    assert session["object"] == "session"
    assert session["status"] == "created"  # no operator here to queue it
    assert session["avatar_id"] == avatar
    assert (session["quality"], session["aspect_ratio"]) == ("lite", "4:3")
    assert (session["idle_timeout_seconds"], session["max_duration_seconds"]) == (30, 600)
    assert session["metadata"] == {"ticket": "T-1"}
    assert session["transport"]["worker_token"] == "[redacted]"
    assert session["created_at"]
    assert session["usage"] == {"billable_seconds": 0.0, "frames": 0}

    resource = cluster.session_object(session["id"])
    assert resource is not None
    assert resource["spec"]["tenant"] == acme.name
    assert resource["metadata"]["labels"][contract.LABEL_TENANT] == acme.name
    assert resource["metadata"]["labels"][contract.LABEL_MANAGED_BY] == contract.MANAGED_BY
    secret = cluster.token_secret(session["id"])
    assert secret is not None
    assert base64.b64decode(secret.data[contract.TOKEN_SECRET_KEY]).decode() == worker_token
    owner = secret.metadata.owner_references[0]
    assert (owner.kind, owner.name, owner.uid) == (
        "AvatarSession",
        resource["metadata"]["name"],
        resource["metadata"]["uid"],
    )
    assert resource["spec"]["tokenSecretRef"]["name"] == secret.metadata.name


async def test_the_worker_token_is_in_no_response_resource_event_or_log_line(
    cluster: Cluster, make_request: RequestFactory, worker_token: str, captured_logs: Any
) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    texts: list[str] = []
    async with cluster.api() as http:
        created = await _create(http, acme, make_request(avatar_id=avatar), key="leak-check")
        session_id = created.json()["id"]
        path = f"/v1/sessions/{session_id}"
        for response in (
            created,
            await _create(http, acme, make_request(avatar_id=avatar), key="leak-check"),
            await http.get(path, headers=acme.headers),
            await http.get("/v1/sessions", headers=acme.headers),
            await http.post(f"{path}/keep-alive", headers=acme.headers),
            await http.post(f"{path}/end", headers=acme.headers),
            await http.delete(path, headers=acme.headers),
            await _create(http, acme, make_request(avatar_id=avatar, quality="pro")),
        ):
            texts.append(response.text + json.dumps(dict(response.headers)))
    resources = cluster.custom.list_namespaced_custom_object(
        GROUP, VERSION, cluster.namespace, AVATAR_SESSION.plural
    )
    events = cluster.core.list_namespaced_event(cluster.namespace)
    logs = captured_logs.getvalue()
    assert session_id in logs  # the log lines are really there
    for where, text in [
        ("responses", "\n".join(texts)),
        ("custom resources", json.dumps(resources)),
        ("events", str(events.to_dict())),
        ("logs", logs),
    ]:
        assert worker_token not in text, f"the worker token leaked into {where}"
        assert acme.key not in text, f"the API key leaked into {where}"


# --- failures on the way to the cluster ----------------------------------------------------------


async def test_a_secret_that_cannot_be_made_leaves_no_session_behind(
    cluster: Cluster, control_plane: Any, make_request: RequestFactory
) -> None:
    """The API runs as a user allowed everything it needs except creating Secrets: a real
    refusal from the API server, after the AvatarSession already exists."""
    rbac = cluster.rbac
    user = f"limited-{uuid.uuid4().hex[:8]}"
    rules = [
        {
            "apiGroups": [GROUP],
            "resources": [AVATAR_SESSION.plural],
            "verbs": ["get", "list", "create", "patch", "delete"],
        },
        {"apiGroups": [GROUP], "resources": [TENANT.plural], "verbs": ["get", "list"]},
        {"apiGroups": [GROUP], "resources": [AVATAR.plural], "verbs": ["get"]},
    ]
    rbac.create_namespaced_role(cluster.namespace, {"metadata": {"name": user}, "rules": rules})
    rbac.create_namespaced_role_binding(
        cluster.namespace,
        {
            "metadata": {"name": user},
            "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": user},
            "subjects": [{"kind": "User", "name": user, "apiGroup": "rbac.authorization.k8s.io"}],
        },
    )
    kubeconfig = control_plane.kubeconfig_for(user, user)
    limited = Kube.from_settings(Settings(kubeconfig=str(kubeconfig), namespace=cluster.namespace))
    try:
        await _until_allowed(limited.ping)
        acme = await cluster.tenant()
        async with cluster.api(kube=limited) as http:
            response = await _create(http, acme, make_request(avatar_id=cluster.avatar(acme)))
        error_of(response, 500, "internal", "internal_error")
        assert cluster.sessions_of(acme) == []
    finally:
        await limited.aclose()


async def _until_allowed(call: Callable[[], Awaitable[None]]) -> None:
    """RBAC changes reach the authorizer through an informer: wait until they have."""
    deadline = time.monotonic() + WAIT_TIMEOUT
    while True:
        try:
            await call()
            return
        except Exception:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)
