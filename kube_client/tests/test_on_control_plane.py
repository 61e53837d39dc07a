"""KubeClient against the real kube-apiserver: the calls and refusals the API and the operator
rely on, the watch, the one credential order, and the token read on every request."""

from __future__ import annotations

import asyncio
import shutil
import socket
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest
import yaml
from kubernetes import client as k8s

from facecast_kube import (
    MERGE_PATCH,
    ConflictError,
    InvalidError,
    KubeClient,
    NotFoundError,
    UnreachableError,
    absent_ok,
    exists_ok,
    load_configuration,
    paths,
)
from testbed.controlplane import ControlPlane

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

WATCH_SECONDS = 30
TOKEN_VALUE = "c2VjcmV0LXRva2VuLTRmOWE="  # base64 of a distinctive value


@pytest.fixture
async def kube(kubeconfig: Path) -> AsyncIterator[KubeClient]:
    made = KubeClient.connect(str(kubeconfig), timeout=10.0)
    yield made
    await made.close()


def lease(name: str, holder: str = "a") -> dict[str, Any]:
    return {
        "apiVersion": "coordination.k8s.io/v1",
        "kind": "Lease",
        "metadata": {"name": name},
        "spec": {"holderIdentity": holder},
    }


async def test_create_get_patch_delete_and_their_refusals(kube: KubeClient, namespace: str) -> None:
    leases = paths.LEASE.collection(namespace)
    one = paths.LEASE.item(namespace, "one")
    created = await kube.request("POST", leases, body=lease("one"))
    assert created["metadata"]["uid"]
    assert (await kube.request("GET", one))["spec"]["holderIdentity"] == "a"
    with pytest.raises(ConflictError) as exists:
        await kube.request("POST", leases, body=lease("one"))
    assert (exists.value.status, exists.value.reason) == (409, "Conflict")
    assert await exists_ok(kube.request("POST", leases, body=lease("one"))) is None

    fresh = {"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}}
    moved = await kube.request(
        "PATCH", one, body={**fresh, "spec": {"holderIdentity": "b"}}, content_type=MERGE_PATCH
    )
    assert moved["spec"]["holderIdentity"] == "b"
    with pytest.raises(ConflictError):  # the same resourceVersion again: stale now
        await kube.request(
            "PATCH", one, body={**fresh, "spec": {"holderIdentity": "c"}}, content_type=MERGE_PATCH
        )

    with pytest.raises(InvalidError) as invalid:
        await kube.request("POST", leases, body=lease("Not_A_Name"))
    assert invalid.value.status == 422
    assert "Not_A_Name" in invalid.value.message  # a Status about a Lease is read

    await kube.request("DELETE", one)
    with pytest.raises(NotFoundError):
        await kube.request("GET", one)
    assert await absent_ok(kube.request("DELETE", one)) is None


async def test_a_refusal_about_a_secret_carries_no_part_of_the_reply(
    kube: KubeClient, namespace: str
) -> None:
    secrets = paths.SECRET.collection(namespace)
    body = {"metadata": {"name": "Bad_Name"}, "data": {"token": TOKEN_VALUE}}
    with pytest.raises(InvalidError) as refused:
        await kube.request("POST", secrets, body=body)
    assert (refused.value.status, refused.value.message) == (422, "")
    assert "Bad_Name" not in str(refused.value)


async def test_a_watch_reports_changes_after_its_version(kube: KubeClient, namespace: str) -> None:
    leases = paths.LEASE.collection(namespace)
    listed = await kube.request("GET", leases)
    version = listed["metadata"]["resourceVersion"]
    async with kube.watch(leases, version=version, seconds=WATCH_SECONDS) as events:
        await kube.request("POST", leases, body=lease("watched"))
        kind, obj = await asyncio.wait_for(anext(aiter(events)), timeout=WATCH_SECONDS)
    assert (kind, obj["metadata"]["name"]) == ("ADDED", "watched")


async def test_no_answer_is_unreachable(kubeconfig: Path) -> None:
    configuration = load_configuration(str(kubeconfig))
    configuration.host = f"https://127.0.0.1:{_closed_port()}"
    kube = KubeClient(configuration, timeout=5.0)
    try:
        with pytest.raises(UnreachableError):
            await kube.request("GET", "/version")
    finally:
        await kube.close()


# --- credentials ---------------------------------------------------------------------------------


@pytest.fixture
def accounts(
    control_plane: ControlPlane, api_client: k8s.ApiClient, namespace: str
) -> dict[str, str]:
    """Two ServiceAccounts of `namespace`, by name: each one's token."""
    core: Any = k8s.CoreV1Api(api_client)
    tokens = {}
    for name in ("first", "second"):
        core.create_namespaced_service_account(namespace, {"metadata": {"name": name}})
        kubeconfig = control_plane.kubeconfig_for_service_account(namespace, name)
        tokens[name] = yaml.safe_load(kubeconfig.read_text())["users"][0]["user"]["token"]
    return tokens


@pytest.fixture
def pod_environment(
    control_plane: ControlPlane, accounts: dict[str, str], tmp_path: Path
) -> tuple[Path, dict[str, str]]:
    """What a pod of ServiceAccount `first` has: its account's files, and the API server's
    address in the environment."""
    mounted = tmp_path / "serviceaccount"
    mounted.mkdir()
    (mounted / "token").write_text(accounts["first"])
    shutil.copy(control_plane.pki.ca.cert, mounted / "ca.crt")
    server = urlsplit(control_plane.server)
    environ = {
        "KUBERNETES_SERVICE_HOST": str(server.hostname),
        "KUBERNETES_SERVICE_PORT": str(server.port),
    }
    return mounted, environ


async def test_an_explicit_kubeconfig_comes_first(
    control_plane: ControlPlane, pod_environment: tuple[Path, dict[str, str]]
) -> None:
    mounted, environ = pod_environment
    explicit = control_plane.kubeconfig_for("kube-client-explicit", "explicit-user")
    configuration = load_configuration(str(explicit), service_account_dir=mounted, environ=environ)
    assert await _identity(configuration) == "explicit-user"


async def test_in_a_pod_its_service_account_comes_before_the_default_kubeconfig(
    control_plane: ControlPlane, pod_environment: tuple[Path, dict[str, str]], namespace: str
) -> None:
    mounted, environ = pod_environment
    default = control_plane.kubeconfig_for("kube-client-default", "default-user")
    in_pod = {**environ, "KUBECONFIG": str(default)}
    configuration = load_configuration(service_account_dir=mounted, environ=in_pod)
    assert await _identity(configuration) == f"system:serviceaccount:{namespace}:first"


async def test_outside_a_pod_the_default_kubeconfig_is_read_when_asked(
    control_plane: ControlPlane, pod_environment: tuple[Path, dict[str, str]]
) -> None:
    mounted, _ = pod_environment
    default = control_plane.kubeconfig_for("kube-client-default", "default-user")
    configuration = load_configuration(
        service_account_dir=mounted, environ={"KUBECONFIG": str(default)}
    )
    assert await _identity(configuration) == "default-user"


async def test_the_token_is_read_on_every_request(
    kubeconfig: Path, accounts: dict[str, str], namespace: str
) -> None:
    """A rotated service-account token (the in-cluster loader swaps it in place) is used from
    the next request on, on the same connections."""
    configuration = load_configuration(str(kubeconfig))
    configuration.cert_file = configuration.key_file = None  # the token alone says who we are
    configuration.api_key_prefix = {"BearerToken": "Bearer"}
    configuration.api_key = {"BearerToken": accounts["first"]}
    kube = KubeClient(configuration, timeout=10.0)
    try:
        assert await _review(kube) == f"system:serviceaccount:{namespace}:first"
        configuration.api_key = {"BearerToken": accounts["second"]}
        assert await _review(kube) == f"system:serviceaccount:{namespace}:second"
    finally:
        await kube.close()


async def _identity(configuration: k8s.Configuration) -> str:
    kube = KubeClient(configuration, timeout=10.0)
    try:
        return await _review(kube)
    finally:
        await kube.close()


async def _review(kube: KubeClient) -> str:
    review = await kube.request(
        "POST",
        "/apis/authentication.k8s.io/v1/selfsubjectreviews",
        body={"apiVersion": "authentication.k8s.io/v1", "kind": "SelfSubjectReview"},
    )
    return str(review["status"]["userInfo"]["username"])


def _closed_port() -> int:
    """A port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port
