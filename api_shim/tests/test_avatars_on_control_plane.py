"""/v1/avatars and inline session avatars against the real kube-apiserver: the Avatar resources
are created, validated (CRD schema and CEL) and read back by the API server, the images land in
a store directory, and the worker's own loading code reads what was stored.

Photographs: scikit-image's astronaut and coffee, insightface's group photo (see
test_avatar_faces.py). The default detector runs for real."""

from __future__ import annotations

import base64
import hashlib
import io
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from kubernetes import client
from kubernetes.client.exceptions import ApiException
from PIL import Image
from skimage import data

from api_shim.app import create_app
from api_shim.avatars.blazeface import BlazeFaceDetector
from api_shim.avatars.decode import MAX_IMAGE_BYTES
from api_shim.avatars.pipeline import AvatarPipeline
from api_shim.kube import Kube
from api_shim.tests.control_plane import BASE_SETTINGS
from avatar_crds import contract
from avatar_crds.avatar import Avatar
from avatar_crds.ids import to_resource_name
from avatar_crds.kinds import AVATAR, AVATAR_SESSION
from avatar_crds.meta import GROUP, VERSION
from avatar_worker.config import read_avatar_image
from avatar_worker.render.lite import LiteRenderer
from avatar_worker.render.portrait import load_portrait
from testbed.tenants import TenantKey, new_tenant


def sample(name: str) -> npt.NDArray[np.uint8]:
    """One of scikit-image's sample photographs (its loaders are untyped)."""
    image: npt.NDArray[np.uint8] = getattr(data, name)()
    return image


pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

SETTINGS = BASE_SETTINGS
WORKER_TOKEN = "lk-worker-token-avatar-tests"


def jpeg(image: Image.Image, quality: int = 92) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=quality)
    return buffer.getvalue()


def group_photo() -> bytes:
    import importlib.util

    spec = importlib.util.find_spec("insightface")
    assert spec is not None
    assert spec.submodule_search_locations
    root = Path(next(iter(spec.submodule_search_locations)))
    return (root / "data" / "images" / "t1.jpg").read_bytes()


PORTRAIT = jpeg(Image.fromarray(sample("astronaut")).resize((1024, 1024)))
NO_FACE = jpeg(Image.fromarray(sample("coffee")))


def session_body(**fields: Any) -> dict[str, Any]:
    return {
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "avatars",
            "worker_token": WORKER_TOKEN,
        },
        **fields,
    }


def error_code(response: httpx.Response, status: int) -> tuple[str, str | None]:
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["request_id"] == response.headers["x-request-id"]
    return error["code"], error["param"]


@dataclass
class Harness:
    kube: Kube
    admin_client: client.ApiClient
    namespace: str
    store: Path
    pipeline: AvatarPipeline

    @property
    def custom(self) -> client.CustomObjectsApi:
        return client.CustomObjectsApi(self.admin_client)

    async def tenant(self, *, url: bool = False, base64_: bool = False) -> TenantKey:
        return await new_tenant(self.kube, allow_url_avatars=url, allow_base64_avatars=base64_)

    def avatar_object(self, avatar_id: str) -> dict[str, Any] | None:
        try:
            raw = self.custom.get_namespaced_custom_object(
                GROUP, VERSION, self.namespace, AVATAR.plural, to_resource_name(avatar_id, "av")
            )
        except ApiException as error:
            if error.status == 404:
                return None
            raise
        assert isinstance(raw, dict)
        return raw

    def avatars_of(self, tenant: TenantKey) -> list[dict[str, Any]]:
        raw = self.custom.list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural
        )
        assert isinstance(raw, dict)
        return [a for a in raw["items"] if a["spec"]["tenant"] == tenant.name]

    def set_status(self, session_id: str, status: dict[str, Any]) -> None:
        """What the operator does: write status through the status subresource."""
        self.custom.patch_namespaced_custom_object_status(
            GROUP,
            VERSION,
            self.namespace,
            AVATAR_SESSION.plural,
            to_resource_name(session_id, "sess"),
            {"status": status},
        )

    @asynccontextmanager
    async def api(self) -> AsyncIterator[httpx.AsyncClient]:
        settings = replace(SETTINGS, namespace=self.namespace, avatar_store=str(self.store))
        app = create_app(settings, self.kube, avatar_pipeline=self.pipeline)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://api") as http:
            yield http


@pytest.fixture(scope="module")
def harness(
    control_plane: Any,
    api_client: client.ApiClient,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Harness]:
    core: Any = client.CoreV1Api(api_client)
    namespace = f"avatars-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    kube = Kube(api_client.configuration, namespace, timeout=10.0)
    pipeline = AvatarPipeline(BlazeFaceDetector)
    yield Harness(kube, api_client, namespace, tmp_path_factory.mktemp("avatar-store"), pipeline)
    pipeline.close()
    kube.close()
    core.delete_namespace(namespace)


async def upload(
    http: httpx.AsyncClient,
    tenant: TenantKey,
    image: bytes,
    *,
    key: str | None = None,
    **fields: str,
) -> httpx.Response:
    headers = dict(tenant.headers)
    if key is not None:
        headers["Idempotency-Key"] = key
    files = {"file": ("portrait.jpg", image, "image/jpeg")}
    return await http.post("/v1/avatars", files=files, data=fields, headers=headers)


# --- upload --------------------------------------------------------------------------------------


async def test_an_uploaded_portrait_becomes_an_avatar_the_worker_can_load(harness: Harness) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        response = await upload(http, acme, PORTRAIT, display_name="Eileen")
    assert response.status_code == 201, response.text
    avatar = response.json()
    assert avatar["id"].startswith("av_")
    assert (avatar["object"], avatar["visibility"], avatar["owned"]) == ("avatar", "tenant", True)
    assert avatar["display_name"] == "Eileen"
    assert (avatar["image"]["width"], avatar["image"]["content_type"]) == (800, "image/jpeg")
    face = avatar["face"]
    assert face["detector"] == "blazeface+facemesh"
    assert len(face["landmarks"]) == 5
    (le, re_, nose, ml, mr) = ((p["x"], p["y"]) for p in face["landmarks"])
    assert le[0] < nose[0] < re_[0]
    assert max(le[1], re_[1]) < nose[1] < min(ml[1], mr[1])

    # The resource, as the API server stored it.
    resource = harness.avatar_object(avatar["id"])
    assert resource is not None
    labels = resource["metadata"]["labels"]
    assert labels[contract.LABEL_TENANT] == acme.name
    spec = resource["spec"]
    assert spec["tenant"] == acme.name
    assert spec["image"]["uri"] == f"{acme.name}/{avatar['id']}.jpg"  # a key in the store
    assert spec["face"]["landmarks"] == face["landmarks"]

    # The image, in the store, exactly as recorded.
    stored = (harness.store / spec["image"]["uri"]).read_bytes()
    assert (
        hashlib.sha256(stored).hexdigest() == spec["image"]["sha256"] == avatar["image"]["sha256"]
    )
    assert len(stored) == spec["image"]["sizeBytes"]
    with Image.open(io.BytesIO(stored)) as image:
        assert (image.format, image.size) == ("JPEG", (800, spec["image"]["height"]))

    # The worker's own code reads it back (checking the sha256) and animates it.
    model = Avatar.model_validate(resource)
    portrait = load_portrait(read_avatar_image(model.spec, str(harness.store)), model.spec.face)
    renderer = LiteRenderer(portrait, (640, 480))
    assert renderer.face.eye_distance > 20


async def test_base64_uploads_and_public_avatars_are_visible_to_everyone(harness: Harness) -> None:
    acme, globex = await harness.tenant(), await harness.tenant()
    data_uri = "data:image/jpeg;base64," + base64.b64encode(PORTRAIT).decode()
    async with harness.api() as http:
        created = await http.post(
            "/v1/avatars",
            json={"image_base64": data_uri, "visibility": "public"},
            headers=acme.headers,
        )
        assert created.status_code == 201, created.text
        public_id = created.json()["id"]
        private = await upload(http, acme, PORTRAIT)
        private_id = private.json()["id"]
        mine = await upload(http, globex, PORTRAIT)

        seen = await http.get(f"/v1/avatars/{public_id}", headers=globex.headers)
        assert seen.status_code == 200
        assert seen.json()["owned"] is False
        hidden = await http.get(f"/v1/avatars/{private_id}", headers=globex.headers)
        assert error_code(hidden, 404) == ("avatar_not_found", "id")
        listing = await http.get("/v1/avatars", headers=globex.headers, params={"limit": 100})
        ids = [a["id"] for a in listing.json()["data"]]
        assert public_id in ids
        assert mine.json()["id"] in ids
        assert private_id not in ids
        refused = await http.delete(f"/v1/avatars/{public_id}", headers=globex.headers)
        assert error_code(refused, 404) == ("avatar_not_found", "id")


async def test_lists_page_newest_first(harness: Harness) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        made = [(await upload(http, acme, PORTRAIT)).json()["id"] for _ in range(3)]
        first = (await http.get("/v1/avatars", headers=acme.headers, params={"limit": 2})).json()
        assert first["has_more"] is True
        rest = await http.get(
            "/v1/avatars",
            headers=acme.headers,
            params={"limit": 100, "cursor": first["next_cursor"]},
        )
    seen = [a["id"] for a in first["data"] + rest.json()["data"] if a["owned"]]
    assert seen == sorted(made, reverse=True)


@pytest.mark.parametrize(
    ("image", "status", "code"),
    [
        (group_photo(), 400, "multiple_faces_detected"),
        (NO_FACE, 400, "no_face_detected"),
        (b"<html><body>Not a photo.</body></html>\n" * 20, 400, "not_an_image"),
        (PORTRAIT[: len(PORTRAIT) // 2], 400, "image_truncated"),
        (PORTRAIT + b"\0" * (MAX_IMAGE_BYTES + 1 - len(PORTRAIT)), 413, "image_too_large"),
    ],
    ids=["group-photo", "no-face", "non-image", "truncated", "oversize"],
)
async def test_unsuitable_uploads_are_refused_and_create_nothing(
    harness: Harness, image: bytes, status: int, code: str
) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        response = await upload(http, acme, image)
    assert error_code(response, status) == (code, "file")
    assert harness.avatars_of(acme) == []
    assert not (harness.store / acme.name).exists() or not any(
        (harness.store / acme.name).iterdir()
    )


async def test_bodies_beyond_the_image_limit_are_413(harness: Harness) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        response = await upload(http, acme, b"\xff" * (16 * 1024 * 1024))
    assert error_code(response, 413)[0] == "request_too_large"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://127.0.0.1:8080/avatar.jpg",
        "http://localhost/avatar.jpg",
        "https://10.0.0.1/avatar.jpg",
    ],
)
async def test_urls_to_private_addresses_are_refused(harness: Harness, url: str) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        response = await http.post("/v1/avatars", json={"image_url": url}, headers=acme.headers)
    assert error_code(response, 400) == ("image_url_forbidden", "image_url")


async def test_json_bodies_need_exactly_one_image(harness: Harness) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        neither = await http.post(
            "/v1/avatars", json={"visibility": "tenant"}, headers=acme.headers
        )
        text = await http.post(
            "/v1/avatars", content=b"hello", headers={**acme.headers, "content-type": "text/plain"}
        )
    assert error_code(neither, 400)[0] == "invalid_parameter"
    assert error_code(text, 400)[0] == "unsupported_content_type"


async def test_an_idempotency_key_replays_the_first_avatar(harness: Harness) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        first = await upload(http, acme, PORTRAIT, key="portrait-1")
        again = await upload(http, acme, PORTRAIT, key="portrait-1")
        other = await upload(http, acme, NO_FACE, key="portrait-1")
    assert first.status_code == again.status_code == 201
    assert again.headers["idempotent-replayed"] == "true"
    assert again.json()["id"] == first.json()["id"]
    assert error_code(other, 409)[0] == "idempotency_key_reused"
    assert len(harness.avatars_of(acme)) == 1


# --- delete --------------------------------------------------------------------------------------


async def test_delete_is_refused_while_an_unfinished_session_uses_the_avatar(
    harness: Harness,
) -> None:
    acme = await harness.tenant()
    async with harness.api() as http:
        avatar = (await upload(http, acme, PORTRAIT)).json()
        path = f"/v1/avatars/{avatar['id']}"
        session = await http.post(
            "/v1/sessions", json=session_body(avatar_id=avatar["id"]), headers=acme.headers
        )
        assert session.status_code == 201, session.text
        harness.set_status(session.json()["id"], {"phase": "running"})
        busy = await http.delete(path, headers=acme.headers)
        assert error_code(busy, 409) == ("avatar_in_use", "id")
        harness.set_status(session.json()["id"], {"phase": "ended", "reason": "user_ended"})
        deleted = await http.delete(path, headers=acme.headers)
        assert deleted.status_code == 200, deleted.text
        assert deleted.json()["id"] == avatar["id"]
        gone = await http.get(path, headers=acme.headers)
    assert error_code(gone, 404)[0] == "avatar_not_found"
    assert harness.avatar_object(avatar["id"]) is None
    assert not (harness.store / acme.name / f"{avatar['id']}.jpg").exists()


# --- inline avatars in POST /v1/sessions ---------------------------------------------------------


async def test_inline_images_need_the_plan_to_allow_them(harness: Harness) -> None:
    acme = await harness.tenant()
    data_uri = "data:image/jpeg;base64," + base64.b64encode(PORTRAIT).decode()
    async with harness.api() as http:
        by_url = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_url": "https://example.com/me.jpg"}),
            headers=acme.headers,
        )
        by_base64 = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_base64": data_uri}),
            headers=acme.headers,
        )
        both = await http.post(
            "/v1/sessions",
            json=session_body(
                avatar_id="av_01JCZ3V7M4Q8R2T6W9X0Y1Z2A3", avatar={"image_base64": "x"}
            ),
            headers=acme.headers,
        )
    assert error_code(by_url, 403) == ("url_avatars_not_allowed", "avatar.image_url")
    assert error_code(by_base64, 403) == ("base64_avatars_not_allowed", "avatar.image_base64")
    assert error_code(both, 400)[0] == "invalid_parameter"
    assert harness.avatars_of(acme) == []


async def test_an_inline_image_becomes_the_sessions_avatar(harness: Harness) -> None:
    acme = await harness.tenant(url=True, base64_=True)
    data_uri = "data:image/jpeg;base64," + base64.b64encode(PORTRAIT).decode()
    async with harness.api() as http:
        created = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_base64": data_uri}),
            headers=acme.headers,
        )
        assert created.status_code == 201, created.text
        avatar_id = created.json()["avatar_id"]
        avatar = await http.get(f"/v1/avatars/{avatar_id}", headers=acme.headers)
        group = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_base64": base64.b64encode(group_photo()).decode()}),
            headers=acme.headers,
        )
        private = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_url": "http://169.254.169.254/latest/"}),
            headers=acme.headers,
        )
    assert avatar.status_code == 200
    assert avatar.json()["owned"] is True
    resource = harness.avatar_object(avatar_id)
    assert resource is not None
    assert resource["metadata"]["labels"]["facecast.io/inline"] == "true"
    assert error_code(group, 400) == ("multiple_faces_detected", "avatar.image_base64")
    assert error_code(private, 400) == ("image_url_forbidden", "avatar.image_url")
    assert len(harness.avatars_of(acme)) == 1  # the refused ones left nothing behind


async def test_no_inline_avatar_is_left_by_a_refused_session(harness: Harness) -> None:
    acme = await harness.tenant(base64_=True)
    data_uri = "data:image/jpeg;base64," + base64.b64encode(PORTRAIT).decode()
    async with harness.api() as http:
        refused = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_base64": data_uri}, quality="pro"),
            headers=acme.headers,
        )
        assert error_code(refused, 403)[0] == "quality_not_allowed"
        # The concurrency limit (set to 0 here) refuses before the image is even processed;
        # test_upload_bounds.py has a session refused after it was, and its avatar removed.
        tenant = await harness.kube.get_tenant(acme.name)
        assert tenant is not None
        tenant.spec.plan.max_concurrent_sessions = 0
        await harness.kube.replace_tenant_spec(tenant)
        full = await http.post(
            "/v1/sessions",
            json=session_body(avatar={"image_base64": data_uri}),
            headers=acme.headers,
        )
    assert error_code(full, 429)[0] == "concurrency_limit_reached"
    assert harness.avatars_of(acme) == []
    assert not (harness.store / acme.name).exists()  # no image was ever stored
