"""The AgentHuman and Protoface compatibility endpoints against the real kube-apiserver: each
page's example request, sent as printed (only the host, key and ids changed), answered in the
page's documented shape (JSON Schemas in compat_schemas/), and each documented refusal in the
service's status and error shape. The sessions made are real AvatarSessions, read back from
the API server."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx
import jsonschema_rs
import pytest
from livekit import api as livekit_api
from PIL import Image
from skimage import data

from api_shim.app import create_app
from api_shim.avatars.blazeface import BlazeFaceDetector
from api_shim.avatars.pipeline import AvatarPipeline
from api_shim.settings import Settings
from api_shim.tests.control_plane import BASE_SETTINGS, Cluster
from avatar_crds.capabilities import RENDERABLE_QUALITIES
from avatar_crds.enums import Quality
from avatar_crds.ids import new_public_id
from testbed.tenants import TenantKey, new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

SCHEMAS = Path(__file__).parent / "compat_schemas"
AGENTHUMAN = "/compat/agenthuman/v1/sessions"
PROTOFACE = "/compat/protoface/v1/sessions"
ROOM = "support-42"
AVATAR_IDENTITY = "agenthuman-avatar"


def schema(name: str) -> dict[str, Any]:
    loaded: dict[str, Any] = json.loads((SCHEMAS / f"{name}.json").read_text())
    return loaded


def conforms(response: httpx.Response, status: int, name: str) -> dict[str, Any]:
    """Assert the status and that the body is valid against compat_schemas/<name>.json."""
    assert response.status_code == status, response.text
    body: dict[str, Any] = response.json()
    jsonschema_rs.validate(schema(name), body)
    return body


def agenthuman_error(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    body = conforms(response, status, "agenthuman_error")
    assert body["error"] == code, body
    assert body["request_id"] == response.headers["x-request-id"]
    return body


def protoface_error(response: httpx.Response, status: int, type_: str, code: str) -> dict[str, Any]:
    body = conforms(response, status, "protoface_error")
    error: dict[str, Any] = body["error"]
    assert (error["type"], error["code"]) == (type_, code), error
    assert error["request_id"] == response.headers["x-request-id"]
    return error


def livekit_token(room: str | None = ROOM, identity: str = AVATAR_IDENTITY) -> str:
    """What an AgentHuman customer mints for the avatar: a real LiveKit access token."""
    token = livekit_api.AccessToken("APIcustomer", "a-secret-of-at-least-32-characters!!")
    token = token.with_identity(identity)
    if room is not None:
        token = token.with_grants(livekit_api.VideoGrants(room_join=True, room=room))
    return token.to_jwt()


TOKEN = livekit_token()  # one token, so that tests can look for it where it must not be


def photo(name: str) -> Any:
    """One of scikit-image's sample photographs (its loaders are untyped)."""
    return getattr(data, name)()


def jpeg(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=90)
    return "data:image/jpeg;base64," + base64.b64encode(buffer.getvalue()).decode()


@pytest.fixture(scope="module")
def pipeline() -> AvatarPipeline:
    return AvatarPipeline(BlazeFaceDetector)


@pytest.fixture
def api(
    cluster: Cluster, pipeline: AvatarPipeline, tmp_path: Path
) -> Any:  # Any: a factory of async context managers
    @asynccontextmanager
    async def make(settings: Settings = BASE_SETTINGS) -> AsyncIterator[httpx.AsyncClient]:
        app = create_app(
            replace(settings, namespace=cluster.namespace, avatar_store=str(tmp_path)),
            cluster.kube,
            avatar_pipeline=pipeline,
            indexes=cluster.indexes,
        )
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http

    return make


def bearer(tenant: TenantKey) -> dict[str, str]:
    return {"Authorization": f"Bearer {tenant.key}"}


# --- AgentHuman ----------------------------------------------------------------------------------


def agenthuman_example(avatar_id: str) -> dict[str, Any]:
    """The page's curl body with its placeholders filled in: its avatar and room, and the
    metadata of its response example."""
    return {
        "avatar": avatar_id,
        "aspect_ratio": "4:3",
        "room": {
            "platform": "livekit",
            "url": "wss://my-app.livekit.cloud",
            "token": TOKEN,
        },
        "metadata": {"user_name": "John Doe", "session_purpose": "Customer Support"},
    }


async def test_agenthuman_example_starts_a_session_in_the_tokens_room(
    cluster: Cluster, api: Any
) -> None:
    acme = await new_tenant(cluster.kube, max_concurrent=1, max_duration=900, minutes=120)
    avatar = cluster.avatar(acme)
    async with api() as http:
        response = await http.post(
            AGENTHUMAN, json=agenthuman_example(avatar), headers=acme.headers
        )
    body = conforms(response, 201, "agenthuman_session_created")
    session = body["session"]
    assert body["message"] == "Session created successfully"
    assert session["status"] == "started"
    assert session["metadata"] == {"user_name": "John Doe", "session_purpose": "Customer Support"}
    assert session["ended_at"] is None
    # The page's own example: one of one concurrent session in use, the plan's minutes left.
    assert body["usage"] == {
        "concurrency": {"current": 1, "max": 1, "available": 0},
        "minutes": {"total_remaining": 120},
    }
    spec = cluster.session_object(session["session_id"])["spec"]  # type: ignore[index]
    livekit = spec["transport"]["livekit"]
    assert (livekit["url"], livekit["roomName"]) == ("wss://my-app.livekit.cloud", ROOM)
    assert livekit["workerIdentity"] == AVATAR_IDENTITY
    assert spec["maxDurationSeconds"] == 900  # the plan's limit, as AgentHuman's expiration
    assert spec.get("idleTimeoutSeconds") is None  # AgentHuman has no idle timeout
    assert spec["aspectRatio"] == "4:3"
    secret = cluster.token_secret(session["session_id"])
    assert base64.b64decode(secret.data["token"]).decode() == TOKEN
    assert TOKEN not in response.text


async def test_agenthuman_template_as_printed_is_a_400(cluster: Cluster, api: Any) -> None:
    """The curl template itself (`"<string>"` placeholders, an empty room) is refused the
    way AgentHuman refuses a bad aspect ratio."""
    acme = await cluster.tenant()
    template = {"avatar": "<string>", "aspect_ratio": "<string>", "room": {}, "metadata": {}}
    async with api() as http:
        response = await http.post(AGENTHUMAN, json=template, headers=acme.headers)
    assert agenthuman_error(response, 400, "invalid_parameter")["param"] == "aspect_ratio"


async def test_agenthuman_defaults_and_https_room_url(cluster: Cluster, api: Any) -> None:
    acme = await cluster.tenant()
    body = agenthuman_example(cluster.avatar(acme))
    del body["aspect_ratio"], body["metadata"]
    body["room"]["url"] = "https://my-app.livekit.cloud"
    async with api() as http:
        response = await http.post(AGENTHUMAN, json=body, headers=acme.headers)
    session = conforms(response, 201, "agenthuman_session_created")["session"]
    assert session["metadata"] == {}
    spec = cluster.session_object(session["session_id"])["spec"]  # type: ignore[index]
    assert spec["aspectRatio"] == "4:3"
    assert spec["transport"]["livekit"]["url"] == "wss://my-app.livekit.cloud"


async def test_agenthuman_refusals_are_400s(cluster: Cluster, api: Any) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    cases: list[tuple[dict[str, Any], str, str]] = [
        *(({"metadata": bad}, "invalid_parameter", "metadata") for bad in ([1], "x", 4, True)),
        ({"metadata": None}, "invalid_parameter", "metadata"),
        ({"aspect_ratio": "16:9"}, "invalid_parameter", "aspect_ratio"),
        (
            {"room": {"platform": "zoom", "url": "https://x.example", "token": "t"}},
            "invalid_parameter",
            "room.platform",
        ),
        (
            {
                "room": {
                    "platform": "livekit",
                    "url": "wss://my-app.livekit.cloud",
                    "token": livekit_token(room=None),
                }
            },
            "invalid_room_token",
            "room.token",
        ),
        (
            {"room": {"platform": "livekit", "url": "wss://10.0.0.8", "token": TOKEN}},
            "transport_url_forbidden",
            "room.url",
        ),
        (
            {"room": {"platform": "daily", "url": "https://acme.daily.co/room", "token": "t"}},
            "transport_not_supported",
            "room.platform",
        ),
    ]
    async with api() as http:
        for overrides, code, param in cases:
            body = {**agenthuman_example(avatar), **overrides}
            response = await http.post(AGENTHUMAN, json=body, headers=acme.headers)
            error = agenthuman_error(response, 400, code)
            assert error["param"] == param, (overrides, error)
            assert TOKEN not in response.text
        daily = {"platform": "daily", "url": "https://acme.daily.co/room", "token": "t"}
        response = await http.post(
            AGENTHUMAN, json={**agenthuman_example(avatar), "room": daily}, headers=acme.headers
        )
    assert "The daily transport is not available" in response.json()["message"]
    assert cluster.sessions_of(acme) == []


async def test_agenthuman_unknown_avatars_are_404(cluster: Cluster, api: Any) -> None:
    acme, globex = await cluster.tenant(), await cluster.tenant()
    others = cluster.avatar(globex)  # private to globex
    async with api() as http:
        for avatar in (new_public_id("av"), others, "avat_01H3Z8G9YR3K2N5M6P7Q8W4T"):
            response = await http.post(
                AGENTHUMAN, json=agenthuman_example(avatar), headers=acme.headers
            )
            agenthuman_error(response, 404, "avatar_not_found")


async def test_agenthuman_image_avatars_need_a_paid_plan_and_one_face(
    cluster: Cluster, api: Any
) -> None:
    free = await cluster.tenant()
    paid = await new_tenant(cluster.kube, allow_url_avatars=True, allow_base64_avatars=True)
    no_face = jpeg(Image.fromarray(photo("coffee")))  # no face in it
    async with api() as http:
        by_url = await http.post(
            AGENTHUMAN,
            json=agenthuman_example("https://example.com/photo.jpg"),
            headers=free.headers,
        )
        by_base64 = await http.post(
            AGENTHUMAN, json=agenthuman_example(no_face), headers=free.headers
        )
        faceless = await http.post(
            AGENTHUMAN, json=agenthuman_example(no_face), headers=paid.headers
        )
    agenthuman_error(by_url, 403, "url_avatars_not_allowed")
    agenthuman_error(by_base64, 403, "base64_avatars_not_allowed")
    assert agenthuman_error(faceless, 400, "no_face_detected")["param"] == "avatar"
    assert cluster.sessions_of(paid) == []


async def test_agenthuman_other_avatar_formats_and_aspect_ratios(
    cluster: Cluster, api: Any
) -> None:
    """The page's other accepted values: a base64 portrait (paid plans) becomes an avatar and
    starts the session; `3:4` and `1:1` as well as the default `4:3`."""
    paid = await new_tenant(cluster.kube, allow_base64_avatars=True)
    portrait = jpeg(Image.fromarray(photo("astronaut")))  # one clear face
    async with api() as http:
        inline = await http.post(
            AGENTHUMAN, json=agenthuman_example(portrait), headers=paid.headers
        )
        ratios = {
            ratio: await http.post(
                AGENTHUMAN,
                json={**agenthuman_example(cluster.avatar(paid)), "aspect_ratio": ratio},
                headers=paid.headers,
            )
            for ratio in ("3:4", "1:1")
        }
    session = conforms(inline, 201, "agenthuman_session_created")["session"]
    spec = cluster.session_object(session["session_id"])["spec"]  # type: ignore[index]
    assert spec["avatarRef"].startswith("av-")  # the portrait, now one of its avatars
    for ratio, response in ratios.items():
        made = conforms(response, 201, "agenthuman_session_created")["session"]
        resource = cluster.session_object(made["session_id"])
        assert resource is not None
        assert resource["spec"]["aspectRatio"] == ratio


async def test_agenthuman_face_rules_are_400s(cluster: Cluster, api: Any) -> None:
    """The one-face rule (a group photo is refused) and a URL that is not public."""
    paid = await new_tenant(cluster.kube, allow_url_avatars=True, allow_base64_avatars=True)
    face = Image.fromarray(photo("astronaut"))
    group = Image.new("RGB", (face.width * 2, face.height))
    group.paste(face, (0, 0))
    group.paste(face, (face.width, 0))
    async with api() as http:
        two_faces = await http.post(
            AGENTHUMAN, json=agenthuman_example(jpeg(group)), headers=paid.headers
        )
        private = await http.post(
            AGENTHUMAN,
            json=agenthuman_example("https://10.0.0.8/photo.jpg"),
            headers=paid.headers,
        )
    assert agenthuman_error(two_faces, 400, "multiple_faces_detected")["param"] == "avatar"
    assert agenthuman_error(private, 400, "image_url_forbidden")["param"] == "avatar"
    assert cluster.sessions_of(paid) == []


async def test_agenthuman_plan_limits(cluster: Cluster, api: Any) -> None:
    acme = await new_tenant(cluster.kube, max_concurrent=1)
    async with api() as http:
        first = await http.post(
            AGENTHUMAN, json=agenthuman_example(cluster.avatar(acme)), headers=acme.headers
        )
        conforms(first, 201, "agenthuman_session_created")
        second = await http.post(
            AGENTHUMAN, json=agenthuman_example(cluster.avatar(acme)), headers=acme.headers
        )
        agenthuman_error(second, 429, "concurrency_limit_reached")
        assert int(second.headers["retry-after"]) >= 1
        spent = await cluster.tenant(minutes=1)
        cluster.set_seconds_used(spent, 60.0)
        exhausted = await http.post(
            AGENTHUMAN, json=agenthuman_example(cluster.avatar(spent)), headers=spent.headers
        )
    agenthuman_error(exhausted, 403, "minutes_exhausted")


async def test_agenthuman_key_errors_are_401(cluster: Cluster, api: Any) -> None:
    async with api() as http:
        missing = await http.post(AGENTHUMAN, json={})
        wrong = await http.post(AGENTHUMAN, json={}, headers={"x-api-key": "fc_" + "x" * 43})
    agenthuman_error(missing, 401, "invalid_api_key")
    agenthuman_error(wrong, 401, "invalid_api_key")


# --- Protoface -----------------------------------------------------------------------------------


def protoface_example(avatar_id: str) -> dict[str, Any]:
    """The page's curl body as printed; only `av_demo` is replaced by a real avatar."""
    return {
        "avatar_id": avatar_id,
        "idle_timeout_seconds": 30,
        "max_duration_seconds": 600,
        "metadata": {"customer_session_id": "abc123"},
        "quality": "standard",
        "transport": {
            "room_name": "demo-room",
            "type": "livekit",
            "url": "wss://my-app.livekit.cloud",
            "worker_token": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9...",
        },
    }


async def test_protoface_example_as_printed(cluster: Cluster, api: Any) -> None:
    """`standard` is a queued session where the installation has the model weights; without
    them, Protoface's 422 naming the tiers it serves and why."""
    acme = await cluster.tenant(qualities=("mock", "lite", "standard"))
    assert Quality.STANDARD in RENDERABLE_QUALITIES
    example = protoface_example(cluster.avatar(acme))
    async with api() as http:  # no FACECAST_SERVED_QUALITIES: mock and lite
        response = await http.post(PROTOFACE, json=example, headers=bearer(acme))
    error = protoface_error(response, 422, "unprocessable", "quality_not_available")
    assert error["param"] == "quality"
    assert "no model weights installed" in error["message"]
    assert error["message"].endswith("Available: mock, lite.")
    with_weights = replace(BASE_SETTINGS, served_qualities="mock,lite,standard,pro")
    async with api(with_weights) as http:
        response = await http.post(PROTOFACE, json=example, headers=bearer(acme))
    assert conforms(response, 201, "protoface_session")["status"] == "queued"


async def test_protoface_create_and_poll(cluster: Cluster, api: Any) -> None:
    acme = await cluster.tenant()
    avatar = cluster.avatar(acme)
    async with api() as http:
        example = {**protoface_example(avatar), "quality": "lite"}
        created = conforms(
            await http.post(PROTOFACE, json=example, headers=bearer(acme)), 201, "protoface_session"
        )
        assert created["status"] == "queued"  # as Protoface's create answers
        assert created["metadata"] == {"customer_session_id": "abc123"}
        assert created["transport"]["worker_identity"] == "protoface-worker"
        assert created["transport"]["worker_token"] == "[redacted]"
        cluster.set_session_status(
            created["id"],
            {
                "phase": "running",
                "runningAt": "2026-05-25T19:00:01Z",
                "worker": {
                    "firstFrameAt": "2026-05-25T19:00:02Z",
                    "frames": 300,
                    "billableSeconds": 12.4,
                },
            },
        )
        polled = await http.get(f"{PROTOFACE}/{created['id']}", headers=bearer(acme))
    session = conforms(polled, 200, "protoface_session")
    assert session["status"] == "running"
    assert session["usage"] == {"billable_seconds": 12, "frames": 300}
    assert session["first_frame_at"] == "2026-05-25T19:00:02Z"
    assert "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9" not in polled.text


async def test_protoface_defaults(cluster: Cluster, api: Any) -> None:
    acme = await cluster.tenant(max_duration=300)
    body = protoface_example(cluster.avatar(acme))
    for field in ("idle_timeout_seconds", "max_duration_seconds", "metadata"):
        del body[field]
    body["quality"] = "lite"
    del body["transport"]["type"]
    async with api() as http:
        response = await http.post(PROTOFACE, json=body, headers=bearer(acme))
    session = conforms(response, 201, "protoface_session")
    assert (session["idle_timeout_seconds"], session["max_duration_seconds"]) == (30, 300)
    assert session["transport"]["type"] == "livekit"
    assert session["quality"] == "lite"


async def test_protoface_refusals(cluster: Cluster, api: Any) -> None:
    acme = await cluster.tenant(max_duration=300)
    avatar = cluster.avatar(acme)
    lite = {**protoface_example(avatar), "quality": "lite", "max_duration_seconds": 300}
    async with api() as http:

        async def post(body: dict[str, Any]) -> httpx.Response:
            response: httpx.Response = await http.post(PROTOFACE, json=body, headers=bearer(acme))
            return response

        pipecat = {**lite, "transport": {**lite["transport"], "type": "pipecat"}}
        error = protoface_error(
            await post(pipecat), 400, "invalid_request", "transport.unsupported"
        )
        assert (error["param"], "pipecat" in error["message"]) == ("transport.type", True)
        no_transport = {k: v for k, v in lite.items() if k != "transport"}
        error = protoface_error(
            await post(no_transport), 422, "invalid_request", "parameter_missing"
        )
        assert error["param"] == "transport"
        for field, value in [
            ("idle_timeout_seconds", 0),
            ("max_duration_seconds", 3601),
            ("metadata", {"_avatar.x": "reserved"}),
            ("metadata", [1]),
        ]:
            error = protoface_error(
                await post({**lite, field: value}), 422, "invalid_request", "invalid_parameter"
            )
            assert error["param"] == field
        error = protoface_error(
            await post({**lite, "max_duration_seconds": 600}),
            422,
            "unprocessable",
            "max_duration_exceeds_plan",
        )
        unknown = {**lite, "avatar_id": new_public_id("av")}
        protoface_error(await post(unknown), 404, "not_found", "avatar_not_found")
        missing = await http.get(f"{PROTOFACE}/{new_public_id('sess')}", headers=bearer(acme))
        protoface_error(missing, 404, "not_found", "session_not_found")
        no_key = await http.post(PROTOFACE, json=lite)
        protoface_error(no_key, 401, "authentication", "invalid_api_key")
    assert cluster.sessions_of(acme) == []


async def test_protoface_key_and_rate_limit(cluster: Cluster, api: Any) -> None:
    """The page's 401 ("Missing or invalid API key") and 429 ("Rate limit exceeded"), in
    Protoface's envelope."""
    acme = await cluster.tenant(rpm=1)
    missing = f"{PROTOFACE}/{new_public_id('sess')}"
    async with api() as http:
        wrong = await http.get(missing, headers={"Authorization": "Bearer fc_" + "x" * 43})
        first = await http.get(missing, headers=bearer(acme))
        limited = await http.get(missing, headers=bearer(acme))
    protoface_error(wrong, 401, "authentication", "invalid_api_key")
    protoface_error(first, 404, "not_found", "session_not_found")
    protoface_error(limited, 429, "rate_limit", "rate_limited")
    assert int(limited.headers["retry-after"]) >= 1


async def test_protoface_capacity_and_concurrency(cluster: Cluster, api: Any) -> None:
    acme = await new_tenant(cluster.kube, max_concurrent=1)
    body = {**protoface_example(cluster.avatar(acme)), "quality": "lite"}
    async with api(replace(BASE_SETTINGS, max_queued=0)) as http:
        full = await http.post(PROTOFACE, json=body, headers=bearer(acme))
    protoface_error(full, 503, "service_unavailable", "at_capacity")
    assert int(full.headers["retry-after"]) >= 1
    async with api() as http:
        conforms(
            await http.post(PROTOFACE, json=body, headers=bearer(acme)), 201, "protoface_session"
        )
        second = await http.post(PROTOFACE, json=body, headers=bearer(acme))
    protoface_error(second, 429, "quota_exceeded", "concurrency_limit_reached")
    assert int(second.headers["retry-after"]) >= 1
