"""What one upload may cost, and how many may be in progress: decoding is refused from the
header when it would take more memory than MAX_DECODE_BYTES (and otherwise stays within its
estimate, measured as the peak resident memory of a process of its own); bodies only images
justify, and the images themselves, take one of a few places or get 503 at_capacity with
Retry-After before they are read, fetched or decoded; and a session that brings its image
inline is refused for concurrency or capacity before the image is fetched.

The API runs in process on the real API server; images are fetched from a small HTTP server on
127.0.0.1, which these tests allow on top of the public addresses (as test_avatar_fetch.py)."""

from __future__ import annotations

import asyncio
import base64
import io
import json
import subprocess
import sys
import threading
import uuid
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import numpy.typing as npt
import pytest
from kubernetes import client
from PIL import Image
from skimage import data

from api_shim.app import create_app
from api_shim.avatars.blazeface import BlazeFaceDetector
from api_shim.avatars.decode import MAX_DECODE_BYTES
from api_shim.avatars.faces import FaceDetector
from api_shim.avatars.fetch import Fetcher
from api_shim.avatars.pipeline import AvatarPipeline, ImageSource
from api_shim.avatars.service import LABEL_INLINE
from api_shim.errors import ApiError
from api_shim.kube import Kube
from api_shim.settings import Settings
from api_shim.tests.control_plane import BASE_SETTINGS
from avatar_crds.addresses import AddressAllowList
from avatar_crds.ids import new_public_id
from avatar_crds.kinds import AVATAR
from avatar_crds.meta import GROUP, VERSION
from testbed.objects import avatar_manifest
from testbed.tenants import TenantKey, new_tenant
from testbed.wait import wait_for

MiB = 2**20
WAIT_TIMEOUT = 60.0


def jpeg_portrait() -> bytes:
    astronaut: npt.NDArray[np.uint8] = getattr(data, "astronaut")()  # noqa: B009 (untyped)
    buffer = io.BytesIO()
    Image.fromarray(astronaut).resize((1024, 1024)).save(buffer, "JPEG", quality=92)
    return buffer.getvalue()


PORTRAIT = jpeg_portrait()


# --- decoding: the cost, from the header --------------------------------------------------------

# Run in a process of its own, so that its peak resident memory (VmHWM, reset just before the
# decode) is the decode's alone. Prints the outcome and the peak's growth in bytes.
_DECODE_SCRIPT = """
import io, json, sys
import numpy as np
from PIL import Image
from api_shim.avatars.decode import decode_cost, decode_image, draft
from api_shim.avatars.problems import ImageRejectedError

fmt, width, height, mode, options = json.loads(sys.argv[1])
if options.get("zeros"):
    image = Image.new(mode, (width, height))
else:  # smooth noise: compresses like a photo, decodes like any other pixels
    small = np.random.default_rng(7).integers(0, 256, (height // 512, width // 512, len(mode)))
    image = Image.fromarray(small.astype(np.uint8).squeeze(), mode).resize((width, height))
options.pop("zeros", None)
buffer = io.BytesIO()
image.save(buffer, fmt, **options)
encoded = buffer.getvalue()
del image, buffer
with Image.open(io.BytesIO(encoded)) as opened:
    draft(opened)
    estimate = decode_cost(opened, (width, height))

def status(field):
    with open("/proc/self/status") as lines:
        return next(int(l.split()[1]) * 1024 for l in lines if l.startswith(field + ":"))

with open("/proc/self/clear_refs", "w") as refs:
    refs.write("5")  # VmHWM := VmRSS
before = status("VmRSS")
try:
    outcome = list(decode_image(encoded).size)
except ImageRejectedError as error:
    outcome = error.code
print(json.dumps({"outcome": outcome, "growth": status("VmHWM") - before,
                  "estimate": estimate, "bytes": len(encoded)}))
"""


def decode_in_a_process(
    fmt: str, width: int, height: int, mode: str, **options: Any
) -> dict[str, Any]:
    spec = json.dumps([fmt, width, height, mode, options])
    done = subprocess.run(
        [sys.executable, "-c", _DECODE_SCRIPT, spec],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def test_the_reviewed_png_bomb_is_refused_from_its_header_at_no_cost() -> None:
    """The review's 154 KB PNG: 6600x6000 RGBA, all zeros. Within the 40-megapixel limit, it
    was decoded at full size (904 MiB more at the API's peak) only to find no face in it."""
    result = decode_in_a_process("PNG", 6600, 6000, "RGBA", zeros=True)
    assert result["bytes"] < 200_000
    assert result["outcome"] == "image_dimensions_too_large"
    assert result["growth"] < 16 * MiB


@pytest.mark.parametrize(
    ("fmt", "width", "height", "mode", "options"),
    [
        ("PNG", 4096, 4096, "RGBA", {}),  # at the limit; flattened, then reduced
        ("PNG", 2000, 8000, "RGB", {}),  # too narrow to reduce: kept at full size
        ("WEBP", 2700, 2700, "RGBA", {}),
        ("JPEG", 7300, 5470, "RGB", {}),  # 40 MP, decoded at a quarter of the scale
        ("JPEG", 4000, 3000, "RGB", {"progressive": True, "subsampling": 0}),
    ],
)
def test_a_decode_takes_no_more_memory_than_its_estimate_and_the_limit(
    fmt: str, width: int, height: int, mode: str, options: dict[str, Any]
) -> None:
    result = decode_in_a_process(fmt, width, height, mode, **options)
    assert isinstance(result["outcome"], list), result
    # Within a few MB of the estimate (decoders keep buffers of their own), and of the limit.
    assert result["growth"] <= result["estimate"] + 8 * MiB, result
    assert result["growth"] <= MAX_DECODE_BYTES + 8 * MiB, result


@pytest.mark.parametrize(
    ("fmt", "width", "height", "mode", "options"),
    [
        ("PNG", 4200, 4200, "RGB", {}),
        ("WEBP", 3000, 3000, "RGB", {}),
        ("JPEG", 7300, 5470, "RGB", {"progressive": True}),  # every coefficient, full size
    ],
)
def test_a_decode_over_the_limit_is_refused_before_it_starts(
    fmt: str, width: int, height: int, mode: str, options: dict[str, Any]
) -> None:
    result = decode_in_a_process(fmt, width, height, mode, **options)
    assert result["estimate"] > MAX_DECODE_BYTES
    assert result["outcome"] == "image_dimensions_too_large"
    assert result["growth"] < 16 * MiB


# --- places: the avatar pipeline ----------------------------------------------------------------


class HeldDetector:
    """Loads the real detector once the test lets it: the first job holds its avatar thread
    for as long as the test wants."""

    def __init__(self) -> None:
        self.release = threading.Event()
        self.started = threading.Event()

    def __call__(self) -> FaceDetector:
        self.started.set()
        self.release.wait(WAIT_TIMEOUT)
        return BlazeFaceDetector()


@pytest.mark.anyio
async def test_a_job_keeps_its_place_until_it_is_done_even_after_its_client_left() -> None:
    held = HeldDetector()
    pipeline = AvatarPipeline(held, threads=1, queue=0)
    try:
        first = asyncio.ensure_future(pipeline.prepare(ImageSource.file(PORTRAIT)))
        await asyncio.to_thread(held.started.wait, WAIT_TIMEOUT)
        first.cancel()  # the client hung up; its job runs on
        with pytest.raises(asyncio.CancelledError):
            await first
        with pytest.raises(ApiError) as refused:
            await pipeline.prepare(ImageSource.file(PORTRAIT))
        assert (refused.value.status, refused.value.code) == (503, "at_capacity")
        assert refused.value.headers() == {"Retry-After": "2"}
        held.release.set()
        await asyncio.to_thread(wait_for, lambda: pipeline.slots.in_use == 0, timeout=WAIT_TIMEOUT)
        prepared = await pipeline.prepare(ImageSource.file(PORTRAIT))
        assert prepared.portrait.width == 800
    finally:
        held.release.set()
        pipeline.close()


# --- places: requests, on the real API server ---------------------------------------------------


@dataclass
class ImageServer:
    """Answers image requests only when the test releases them; counts what it was asked."""

    port: int = 0
    requests: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@pytest.fixture
async def image_server() -> AsyncIterator[ImageServer]:
    state = ImageServer()

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        state.requests.append(head.split(" ", 2)[1])
        await state.release.wait()
        writer.write(
            b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Type: image/jpeg\r\n"
            + f"Content-Length: {len(PORTRAIT)}\r\n\r\n".encode()
            + PORTRAIT
        )
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state
        state.release.set()


# The image servers of these tests listen on loopback, which the platform allows here.
allow_test_server = AddressAllowList.parse(networks="127.0.0.1/32").allows_address


@dataclass
class Cluster:
    kube: Kube
    admin_client: client.ApiClient
    namespace: str
    store: Path

    async def tenant(self, **plan: Any) -> TenantKey:
        return await new_tenant(self.kube, **plan)

    def avatar(self, owner: TenantKey) -> str:
        public_id = new_public_id("av")
        client.CustomObjectsApi(self.admin_client).create_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, avatar_manifest(public_id, owner.name)
        )
        return public_id

    def inline_avatars(self, owner: TenantKey) -> list[dict[str, Any]]:
        raw = client.CustomObjectsApi(self.admin_client).list_namespaced_custom_object(
            GROUP, VERSION, self.namespace, AVATAR.plural, label_selector=f"{LABEL_INLINE}=true"
        )
        assert isinstance(raw, dict)
        return [a for a in raw["items"] if a["spec"]["tenant"] == owner.name]

    @asynccontextmanager
    async def api(
        self, settings: Settings, pipeline: AvatarPipeline
    ) -> AsyncIterator[httpx.AsyncClient]:
        settings = replace(settings, namespace=self.namespace, avatar_store=str(self.store))
        app = create_app(settings, self.kube, avatar_pipeline=pipeline)
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(
            transport=transport, base_url="http://api", timeout=WAIT_TIMEOUT
        ) as http:
            yield http


@pytest.fixture(scope="module")
def cluster(
    control_plane: Any,
    api_client: client.ApiClient,
    crds: None,
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Cluster]:
    core: Any = client.CoreV1Api(api_client)
    namespace = f"uploads-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": namespace}})
    kube = Kube(api_client.configuration, namespace, timeout=10.0)
    yield Cluster(kube, api_client, namespace, tmp_path_factory.mktemp("avatar-store"))
    kube.close()
    core.delete_namespace(namespace)


SETTINGS = BASE_SETTINGS


def loopback_pipeline(**options: Any) -> AvatarPipeline:
    fetcher = Fetcher(ports=None, address_allowed=allow_test_server)
    return AvatarPipeline(BlazeFaceDetector, fetcher=fetcher, **options)


def refused(response: httpx.Response, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == code, error
    assert error["request_id"] == response.headers["x-request-id"]
    return error


class HeldBody:
    """A request body that sends its first chunk, then waits for the test."""

    def __init__(self, first: bytes, rest: bytes) -> None:
        self.first, self.rest = first, rest
        self.sent = 0
        self.release = asyncio.Event()

    async def __aiter__(self) -> AsyncIterator[bytes]:
        self.sent += 1
        yield self.first
        await self.release.wait()
        self.sent += 1
        yield self.rest


def session(**fields: Any) -> dict[str, Any]:
    return {
        "quality": "lite",
        "transport": {
            "type": "livekit",
            "url": "wss://rtc.example.com",
            "room_name": "bounds",
            "worker_token": "lk-token-upload-bounds",
        },
        **fields,
    }


def multipart(image: bytes, boundary: str = "facecast-test") -> tuple[bytes, dict[str, str]]:
    body = (
        (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="a.jpg"\r\n'
            "Content-Type: image/jpeg\r\n\r\n"
        ).encode()
        + image
        + f"\r\n--{boundary}--\r\n".encode()
    )
    return body, {"content-type": f"multipart/form-data; boundary={boundary}"}


@pytest.mark.controlplane
@pytest.mark.anyio
async def test_uploads_beyond_the_places_for_large_bodies_get_503_before_they_are_read(
    cluster: Cluster,
) -> None:
    """Each upload spools to /tmp (and a JSON one is held in memory) while it is read: only
    `max_large_bodies` are read at once; the next is refused before its first byte is."""
    acme = await cluster.tenant()
    pipeline = loopback_pipeline()
    settings = replace(SETTINGS, max_large_bodies=2)
    body, content_type = multipart(PORTRAIT)
    held = [HeldBody(body[: len(body) // 2], body[len(body) // 2 :]) for _ in range(2)]
    try:
        async with cluster.api(settings, pipeline) as http:

            def post(content: Any, length: int) -> Any:
                headers = {**acme.headers, **content_type, "content-length": str(length)}
                return http.post("/v1/avatars", content=content, headers=headers)

            uploads = [asyncio.ensure_future(post(h, len(body))) for h in held]
            await asyncio.to_thread(
                wait_for, lambda: all(h.sent == 1 for h in held), timeout=WAIT_TIMEOUT
            )
            third = HeldBody(body[:10], body[10:])
            third.release.set()
            response = await post(third, len(body))
            error = refused(response, 503, "at_capacity")
            assert error["type"] == "service_unavailable"
            assert response.headers["retry-after"] == "2"
            assert third.sent == 0  # refused unread
            # A small body needs no such place.
            assert (await http.get("/v1/avatars", headers=acme.headers)).status_code == 200
            for h in held:
                h.release.set()
            for done in await asyncio.gather(*uploads):
                assert done.status_code == 201, done.text
            assert (await post(body, len(body))).status_code == 201  # places given back
    finally:
        for h in held:
            h.release.set()
        pipeline.close()


@pytest.mark.controlplane
@pytest.mark.anyio
async def test_images_beyond_the_avatar_queue_get_503_before_they_are_fetched(
    cluster: Cluster, image_server: ImageServer
) -> None:
    """threads + queue images at once, from fetching to the face found: the executor's queue,
    and the images waiting in it, are bounded."""
    acme = await cluster.tenant()
    pipeline = loopback_pipeline(threads=1, queue=1)
    try:
        async with cluster.api(SETTINGS, pipeline) as http:

            def create(path: str) -> Any:
                url = image_server.url(path)
                return http.post("/v1/avatars", json={"image_url": url}, headers=acme.headers)

            waiting = [asyncio.ensure_future(create(f"/{n}.jpg")) for n in range(2)]
            await asyncio.to_thread(
                wait_for, lambda: len(image_server.requests) == 2, timeout=WAIT_TIMEOUT
            )
            response = await create("/third.jpg")
            refused(response, 503, "at_capacity")
            assert response.headers["retry-after"] == "2"
            assert "/third.jpg" not in image_server.requests  # never fetched
            image_server.release.set()
            for done in await asyncio.gather(*waiting):
                assert done.status_code == 201, done.text
    finally:
        pipeline.close()


@pytest.mark.controlplane
@pytest.mark.anyio
@pytest.mark.parametrize("limit", ["concurrency", "capacity"])
async def test_an_inline_image_is_not_fetched_for_a_session_that_would_be_refused(
    cluster: Cluster, image_server: ImageServer, limit: str
) -> None:
    acme = await cluster.tenant(max_concurrent=1, allow_url_avatars=True)
    settings = SETTINGS
    pipeline = loopback_pipeline()
    image_server.release.set()
    try:
        if limit == "capacity":
            settings = replace(SETTINGS, max_queued=0)
        else:
            async with cluster.api(settings, pipeline) as http:
                taken = await http.post(
                    "/v1/sessions",
                    json=session(avatar_id=cluster.avatar(acme)),
                    headers=acme.headers,
                )
                assert taken.status_code == 201, taken.text
        async with cluster.api(settings, pipeline) as http:
            response = await http.post(
                "/v1/sessions",
                json=session(avatar={"image_url": image_server.url("/inline.jpg")}),
                headers=acme.headers,
            )
        if limit == "capacity":
            refused(response, 503, "at_capacity")
        else:
            refused(response, 429, "concurrency_limit_reached")
        assert image_server.requests == []
    finally:
        pipeline.close()


@pytest.mark.controlplane
@pytest.mark.anyio
async def test_an_inline_avatar_made_for_a_session_refused_after_all_is_removed(
    cluster: Cluster,
) -> None:
    """The check before the image is only a check: the place is taken after it. Here the
    tenant's one place is taken while the image is being processed, so the session is refused
    after its avatar was made, and the avatar and its image are removed again."""
    acme = await cluster.tenant(max_concurrent=1, allow_base64_avatars=True)
    held = HeldDetector()
    pipeline = AvatarPipeline(held)
    data_uri = "data:image/jpeg;base64," + base64.b64encode(PORTRAIT).decode()
    try:
        async with cluster.api(SETTINGS, pipeline) as http:
            inline = asyncio.ensure_future(
                http.post(
                    "/v1/sessions",
                    json=session(avatar={"image_base64": data_uri}),
                    headers=acme.headers,
                )
            )
            await asyncio.to_thread(held.started.wait, WAIT_TIMEOUT)
            taken = await http.post(
                "/v1/sessions", json=session(avatar_id=cluster.avatar(acme)), headers=acme.headers
            )
            assert taken.status_code == 201, taken.text
            held.release.set()
            refused(await inline, 429, "concurrency_limit_reached")
        assert cluster.inline_avatars(acme) == []
        assert list((cluster.store / acme.name).iterdir()) == []  # stored, then removed
    finally:
        held.release.set()
        pipeline.close()
