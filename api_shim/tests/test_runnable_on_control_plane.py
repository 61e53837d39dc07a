"""POST /v1/sessions refuses, against the real kube-apiserver, what could never run: a room the
platform does not let workers connect to (cloud metadata, cluster and loopback addresses, unless
the platform allows its own LiveKit), a room name LiveKit would not take, a transport this
version does not have or a quality tier this installation does not serve. Each is a typed 4xx
naming the field, and leaves no AvatarSession or Secret behind; what can run is still created."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from typing import Any

import httpx
import pytest
from kubernetes import client

from api_shim.app import create_app
from api_shim.kube import Kube
from api_shim.settings import Settings
from api_shim.tests.control_plane import BASE_SETTINGS
from avatar_crds import contract
from avatar_crds.capabilities import NEEDS_MODEL_WEIGHTS, RENDERABLE_QUALITIES
from avatar_crds.enums import Quality
from avatar_crds.ids import new_public_id
from avatar_crds.kinds import AVATAR, AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from testbed.objects import avatar_manifest
from testbed.tenants import TenantKey, new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

RequestFactory = Callable[..., dict[str, Any]]
SETTINGS = BASE_SETTINGS


@dataclass
class Harness:
    kube: Kube
    admin_client: client.ApiClient
    namespace: str

    async def tenant(self, qualities: tuple[str, ...] = ("mock", "lite")) -> TenantKey:
        return await new_tenant(self.kube, qualities=qualities)

    def avatar(self, owner: TenantKey) -> str:
        public_id = new_public_id("av")
        client.CustomObjectsApi(self.admin_client).create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, avatar_manifest(public_id, owner.name)
        )
        return public_id

    def leftovers(self, tenant: TenantKey) -> tuple[int, int]:
        """(AvatarSessions, Secrets) labelled for the tenant."""
        selector = f"{contract.LABEL_TENANT}={tenant.name}"
        custom: Any = client.CustomObjectsApi(self.admin_client)
        sessions = custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR_SESSION.plural, label_selector=selector
        )
        core: Any = client.CoreV1Api(self.admin_client)
        secrets = core.list_namespaced_secret(self.namespace, label_selector=selector)
        return len(sessions["items"]), len(secrets.items)

    @asynccontextmanager
    async def api(self, settings: Settings = SETTINGS) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(replace(settings, namespace=self.namespace), self.kube)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


@pytest.fixture(scope="module")
def harness(control_plane: Any, api_client: client.ApiClient, crds: None) -> Iterator[Harness]:
    core: Any = client.CoreV1Api(api_client)
    namespace = f"runnable-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    kube = Kube(api_client.configuration, namespace, timeout=10.0)
    yield Harness(kube=kube, admin_client=api_client, namespace=namespace)
    kube.close()
    core.delete_namespace(namespace)


def livekit(url: str, room_name: str = "support-42") -> dict[str, Any]:
    return {"type": "livekit", "url": url, "room_name": room_name, "worker_token": "t.o.k"}


def refusal(response: httpx.Response, status: int) -> tuple[str, str, str]:
    """(code, param, message) of an error envelope with this status."""
    assert response.status_code == status, response.text
    error = response.json()["error"]
    return error["code"], error["param"], error["message"]


FORBIDDEN_URLS = [
    "ws://169.254.169.254/",  # cloud metadata
    "ws://10.0.0.1:7880",
    "wss://kubernetes.default.svc:443",
    "ws://[::1]:7880",
    "ws://127.0.0.1:7880",
    "ws://[::ffff:169.254.169.254]/",  # the metadata service, spelled as IPv6
    "ws://127.1:7880",  # loopback in the resolver's shorthand
    "ws://localhost:7880",
    "ws://livekit:7880",  # one label: found through the cluster's DNS search path
    "wss://api.facecast.svc.cluster.local",
    "ws://100.100.100.200/",  # CGNAT: Alibaba Cloud's metadata service
]


async def test_rooms_inside_the_cluster_or_host_are_refused_and_leave_nothing(
    harness: Harness, make_request: RequestFactory
) -> None:
    acme = await harness.tenant()
    avatar = harness.avatar(acme)
    async with harness.api() as http:
        for url in FORBIDDEN_URLS:
            body = make_request(avatar_id=avatar, transport=livekit(url))
            response = await http.post("/v1/sessions", json=body, headers=acme.headers)
            code, param, message = refusal(response, 400)
            assert (code, param) == ("transport_url_forbidden", "transport.url"), url
            assert "public address" in message or "local name" in message, message
        public = make_request(avatar_id=avatar, transport=livekit("wss://rtc.example.com"))
        created = await http.post("/v1/sessions", json=public, headers=acme.headers)
    assert created.status_code == 201, created.text
    assert harness.leftovers(acme) == (1, 1)  # only the public one


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("wss://user:secret@rtc.example.com", "user name or password"),
        ("ws://evil.example.com\\@10.0.0.1/", "backslashes"),
        ("ws://[fe80::1%25eth0]:7880", "user name or password"),
        ("wss://rtc.exa_mple.com", "must be a DNS name"),
    ],
)
async def test_urls_two_parsers_could_read_differently_are_invalid(
    harness: Harness, make_request: RequestFactory, url: str, why: str
) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        body = make_request(avatar_id=harness.avatar(acme), transport=livekit(url))
        response = await http.post("/v1/sessions", json=body, headers=acme.headers)
    code, param, message = refusal(response, 400)
    assert (code, param) == ("invalid_parameter", "transport.url")
    assert why in message
    assert "secret" not in message  # the URL's password is not echoed


async def test_the_platforms_own_livekit_is_allowed_when_the_platform_says_so(
    harness: Harness, make_request: RequestFactory
) -> None:
    acme = await harness.tenant()
    avatar = harness.avatar(acme)
    own = replace(
        SETTINGS,
        transport_allowed_hosts="livekit.facecast.svc.cluster.local",
        transport_allowed_cidrs="10.0.0.1/32,fd00::7/128",
    )
    allowed = [
        "ws://10.0.0.1:7880",
        "ws://[fd00::7]:7880",
        "ws://LiveKit.facecast.svc.cluster.local.:7880",
    ]
    async with harness.api(own) as http:
        for url in allowed:
            body = make_request(avatar_id=avatar, transport=livekit(url))
            response = await http.post("/v1/sessions", json=body, headers=acme.headers)
            assert response.status_code == 201, (url, response.text)
        for url in ("ws://10.0.0.2:7880", "ws://169.254.169.254/", "wss://kubernetes.default.svc"):
            body = make_request(avatar_id=avatar, transport=livekit(url))
            response = await http.post("/v1/sessions", json=body, headers=acme.headers)
            assert refusal(response, 400)[:2] == ("transport_url_forbidden", "transport.url")
    assert harness.leftovers(acme) == (len(allowed), len(allowed))


@pytest.mark.parametrize(
    ("room_name", "why"),
    [
        ("support\x0042", "control characters (U+0000)"),
        ("line\nbreak", "control characters (U+000A)"),
        ("é" * 129, "258 bytes"),  # 129 characters, but over LiveKit's 256-byte limit
    ],
)
async def test_room_names_livekit_would_not_take_are_refused(
    harness: Harness, make_request: RequestFactory, room_name: str, why: str
) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        body = make_request(
            avatar_id=harness.avatar(acme),
            transport=livekit("wss://rtc.example.com", room_name),
        )
        response = await http.post("/v1/sessions", json=body, headers=acme.headers)
    code, param, message = refusal(response, 400)
    assert (code, param) == ("invalid_parameter", "transport.room_name")
    assert why in message
    assert harness.leftovers(acme) == (0, 0)


async def test_a_daily_room_is_refused_at_create_naming_what_is_available(
    harness: Harness, make_request: RequestFactory
) -> None:
    acme = await harness.tenant()
    daily = {"type": "daily", "url": "https://acme.daily.co/room", "worker_token": "t"}
    async with harness.api() as http:
        body = make_request(avatar_id=harness.avatar(acme), transport=daily)
        response = await http.post("/v1/sessions", json=body, headers=acme.headers)
    code, param, message = refusal(response, 422)
    assert (code, param) == ("transport_not_supported", "transport.type")
    assert "daily" in message
    assert "available: livekit" in message
    assert harness.leftovers(acme) == (0, 0)


@pytest.mark.parametrize(
    ("served_setting", "served"),
    [
        ("", [Quality.MOCK, Quality.LITE]),  # the chart without the model volume
        ("mock,lite,standard,pro", list(Quality)),  # with it
        ("lite,standard", [Quality.LITE, Quality.STANDARD]),
    ],
)
async def test_tiers_this_installation_does_not_serve_are_refused_and_the_others_created(
    harness: Harness, make_request: RequestFactory, served_setting: str, served: list[Quality]
) -> None:
    assert set(RENDERABLE_QUALITIES) == set(Quality)  # every tier has a renderer
    acme = await harness.tenant(qualities=tuple(Quality))  # the plan would allow every tier
    avatar = harness.avatar(acme)
    settings = replace(SETTINGS, served_qualities=served_setting)
    async with harness.api(settings) as http:
        outcomes = {
            quality: await http.post(
                "/v1/sessions",
                json=make_request(avatar_id=avatar, quality=str(quality)),
                headers=acme.headers,
            )
            for quality in Quality
        }
        body = make_request(avatar_id=avatar)
        del body["quality"]
        unnamed = await http.post("/v1/sessions", json=body, headers=acme.headers)
    # A session that names no tier gets standard where it is served (Protoface's default),
    # else lite.
    assert unnamed.status_code == 201, unnamed.text
    default = Quality.STANDARD if Quality.STANDARD in served else Quality.LITE
    assert unnamed.json()["quality"] == default
    for quality, response in outcomes.items():
        if quality in served:
            assert response.status_code == 201, response.text
            continue
        code, param, message = refusal(response, 422)
        assert (code, param) == ("quality_not_available", "quality")
        assert f"Quality {quality} is not available on this installation" in message
        # why: said for the tiers that need weights, not for one merely left out
        assert ("no model weights installed" in message) == (quality in NEEDS_MODEL_WEIGHTS)
        assert message.endswith(f"Available: {', '.join(served)}.")
    assert harness.leftovers(acme) == (len(served) + 1,) * 2


def test_the_served_tiers_setting_is_checked_at_start_up() -> None:
    env = contract.ENV_SERVED_QUALITIES
    assert env == "FACECAST_SERVED_QUALITIES"
    with pytest.raises(ValueError, match=rf"{env}: 'ultra' is not a quality tier"):
        Settings.from_env({env: "lite,ultra"})
    parsed = Settings.from_env({env: " lite , standard,"})
    assert parsed.served() == {Quality.LITE, Quality.STANDARD}
    assert Settings.from_env({}).served() == {Quality.MOCK, Quality.LITE}


def test_an_allow_list_that_is_not_valid_stops_the_api_at_start_up() -> None:
    with pytest.raises(ValueError, match=rf"{contract.ENV_TRANSPORT_ALLOWED_CIDRS}.*10\.0\.0\.300"):
        Settings.from_env({contract.ENV_TRANSPORT_ALLOWED_CIDRS: "10.0.0.1/32, 10.0.0.300/32"})
    parsed = Settings.from_env({contract.ENV_TRANSPORT_ALLOWED_CIDRS: " 10.0.0.0/30 ,"})
    assert [str(n) for n in parsed.transport_allow_list().networks] == ["10.0.0.0/30"]
