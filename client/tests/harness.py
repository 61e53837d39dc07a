"""The real API for the client to talk to, as fixtures (conftest.py registers them):
`python -m api_shim` (uvicorn) on 127.0.0.1, against the real kube-apiserver of testbed,
each in a namespace of its own. The client does real HTTP; tenants are made with the admin
CLI's functions (testbed/tenants.py)."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from typing import Any

import pytest
from kubernetes import client

import facecast
from api_shim.kube import Kube
from avatar_crds.ids import new_public_id
from avatar_crds.kinds import AVATAR
from avatar_crds.meta import GROUP, VERSION
from testbed.api_process import running_api
from testbed.objects import avatar_manifest

WORKER_TOKEN = "lk-worker-token-client-tests-5c1e"  # distinctive, so a leak would show


@dataclass(frozen=True)
class RunningApi:
    url: str
    namespace: str
    kube: Kube  # the same namespace, for making tenants


ApiFactory = Callable[..., AbstractContextManager[RunningApi]]


def session_request(avatar_id: str, **fields: Any) -> facecast.CreateSessionRequest:
    """A valid create, in your own (public) LiveKit room; `fields` replace top-level ones."""
    transport = facecast.LiveKitTransport(
        url="wss://rtc.example.com", room_name="support-42", worker_token=WORKER_TOKEN
    )
    return facecast.CreateSessionRequest.model_validate(
        {"avatar_id": avatar_id, "quality": "lite", "transport": transport, **fields}
    )


@pytest.fixture(scope="module")
def start_api(
    control_plane: Any,
    api_client: client.ApiClient,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> ApiFactory:
    """`with start_api(MAX_QUEUED="1") as api:` runs the API process, with these
    `FACECAST_*` settings, in a fresh namespace; stopped (and the namespace deleted) after."""

    @contextmanager
    def start(**settings: str) -> Iterator[RunningApi]:
        core: Any = client.CoreV1Api(api_client)
        namespace = f"client-{uuid.uuid4().hex[:10]}"
        core.create_namespace({"metadata": {"name": namespace}})
        workdir = tmp_path_factory.mktemp("api")
        kube = Kube(api_client.configuration, namespace, timeout=10.0)
        try:
            with running_api(control_plane.kubeconfig, namespace, workdir, **settings) as api:
                yield RunningApi(api.url, namespace, kube)
        finally:
            kube.close()
            core.delete_namespace(namespace)  # the namespace controller finishes in the background

    return start


@pytest.fixture(scope="module")
def api(start_api: ApiFactory) -> Iterator[RunningApi]:
    """One API process for a test module; each test makes its own tenants."""
    with start_api() as running:
        yield running


@pytest.fixture(scope="module")
def avatar_in(api_client: client.ApiClient) -> Callable[[RunningApi], str]:
    """Makes an `av_...` every tenant of that API may use, recorded as an upload would be (the
    avatar tests upload real photographs; sessions only need one to point at)."""

    def make(api: RunningApi) -> str:
        public_id = new_public_id("av")
        client.CustomObjectsApi(api_client).create_namespaced_custom_object(
            GROUP,
            VERSION,
            api.namespace,
            AVATAR.plural,
            avatar_manifest(public_id, "platform", visibility="public"),
        )
        return public_id

    return make


@pytest.fixture(scope="module")
def public_avatar(api: RunningApi, avatar_in: Callable[[RunningApi], str]) -> str:
    return avatar_in(api)
