"""What a request body can cost the real API process (`python -m api_shim`, uvicorn, on the
real API server), measured as the growth of its peak resident memory (VmHWM, reset just before
each test through /proc/<pid>/clear_refs):

- a body without a valid key gets its 401 before it is read: an anonymous 14 MiB body was
  parsed first (about 390 MB more at the peak, four at once 611 MB);
- an authenticated large body that holds more JSON values than a valid request could is 413
  before anything parses it;
- a PNG that would take more memory to decode than allowed is refused from its header (a
  154 KB PNG of 6600x6000 blank RGBA pixels took 904 MiB);
- and a chunked body is cut off at its route's limit as it streams.
"""

from __future__ import annotations

import asyncio
import io
import json
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest
from kubernetes import client
from PIL import Image

from api_shim.kube import Kube
from testbed.api_process import running_api
from testbed.tenants import TenantKey, new_tenant

pytestmark = [pytest.mark.controlplane, pytest.mark.anyio]

MiB = 2**20
WAIT_TIMEOUT = 60.0
# A JSON array of empty objects, as the review sent it: 3 bytes of body a value.
EMPTY_OBJECTS = b"[" + b"{}," * (14 * MiB // 3 - 1) + b"{}]"


@dataclass
class Api:
    """The API as a process of its own, and what a test needs to talk to it."""

    pid: int
    port: int

    def status(self, field: str) -> int:
        """A size from /proc/<pid>/status, in bytes."""
        lines = Path(f"/proc/{self.pid}/status").read_text().splitlines()
        return next(int(line.split()[1]) * 1024 for line in lines if line.startswith(f"{field}:"))

    def reset_peak(self) -> int:
        """VmHWM := VmRSS; returns that."""
        Path(f"/proc/{self.pid}/clear_refs").write_text("5")
        return self.status("VmRSS")

    def peak_growth(self, since: int) -> int:
        return self.status("VmHWM") - since

    def client(self, tenant: TenantKey | None = None) -> httpx.AsyncClient:
        return httpx.AsyncClient(
            base_url=f"http://127.0.0.1:{self.port}",
            headers=tenant.headers if tenant else None,
            timeout=WAIT_TIMEOUT,
        )


@pytest.fixture(scope="module")
def namespace(api_client: client.ApiClient, crds: None) -> Iterator[str]:
    core: Any = client.CoreV1Api(api_client)
    name = f"bodies-{uuid.uuid4().hex[:10]}"
    core.create_namespace({"metadata": {"name": name}})
    yield name
    core.delete_namespace(name)


@pytest.fixture(scope="module")
def kube(api_client: client.ApiClient, namespace: str) -> Iterator[Kube]:
    kube = Kube(api_client.configuration, namespace, timeout=10.0)
    yield kube
    kube.close()


@pytest.fixture(scope="module")
def api(
    control_plane: Any, namespace: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Api]:
    workdir = tmp_path_factory.mktemp("api")
    with running_api(control_plane.kubeconfig, namespace, workdir) as running:
        yield Api(running.process.popen.pid, running.port)


@pytest.fixture
async def acme(kube: Kube, api: Api) -> TenantKey:
    """A tenant, and an API process that has done every kind of work once (key cache, avatar
    pipeline, face detector), so that what a test measures is its own request."""
    tenant = await new_tenant(kube, allow_base64_avatars=True)
    blank = io.BytesIO()
    Image.new("RGB", (256, 256), "white").save(blank, "PNG")
    async with api.client(tenant) as http:
        upload = await http.post("/v1/avatars", files={"file": ("a.png", blank.getvalue())})
        assert upload.json()["error"]["code"] == "no_face_detected", upload.text
        listed = await http.get("/v1/sessions")
        assert listed.status_code == 200, listed.text
    return tenant


@dataclass
class RawResponse:
    status: int
    headers: dict[str, str]
    body: bytes

    def error(self) -> dict[str, Any]:
        error: dict[str, Any] = json.loads(self.body)["error"]
        return error


async def raw_post(
    port: int,
    path: str,
    body: bytes,
    *,
    headers: dict[str, str] | None = None,
    send_only: int | None = None,
) -> RawResponse:
    """POST over a plain socket, writing the body while the response is read, so that a
    server that answers before reading the body is seen to (`send_only`: stop sending after
    that many bytes of it, and wait for the answer all the same)."""
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    head = [f"POST {path} HTTP/1.1", "Host: api", "Content-Type: application/json"]
    head += [f"{name}: {value}" for name, value in (headers or {}).items()]
    head.append(f"Content-Length: {len(body)}")
    writer.write(("\r\n".join(head) + "\r\n\r\n").encode())

    async def send() -> None:
        try:
            writer.write(body[:send_only] if send_only is not None else body)
            await writer.drain()
        except ConnectionError:
            pass  # the server may close once it has answered

    sending = asyncio.ensure_future(send())
    try:
        status_line, *header_lines = (
            (await reader.readuntil(b"\r\n\r\n")).decode().strip().split("\r\n")
        )
        fields = {
            name.strip().lower(): value.strip()
            for name, value in (line.split(":", 1) for line in header_lines)
        }
        content = await reader.readexactly(int(fields.get("content-length", "0")))
        return RawResponse(int(status_line.split()[1]), fields, content)
    finally:
        await sending
        writer.close()


async def test_an_anonymous_body_is_refused_before_it_is_read(api: Api) -> None:
    """Only the first 64 KiB of a declared 14 MiB are ever sent: the 401 comes all the same
    (it used to wait for the rest, to parse it)."""
    response = await asyncio.wait_for(
        raw_post(api.port, "/v1/sessions", EMPTY_OBJECTS, send_only=64 * 1024), WAIT_TIMEOUT / 4
    )
    assert response.status == 401
    assert response.error()["code"] == "invalid_api_key"


async def test_anonymous_14_mib_bodies_leave_the_peak_memory_alone(api: Api) -> None:
    since = api.reset_peak()
    keys = [{}, {"x-api-key": "fc_" + "A" * 43}, {"Authorization": "Bearer wrong"}, {}]
    responses = await asyncio.gather(
        *(raw_post(api.port, "/v1/sessions", EMPTY_OBJECTS, headers=k) for k in keys)
    )
    assert [r.status for r in responses] == [401] * 4
    growth = api.peak_growth(since)
    assert growth < 32 * MiB, f"{growth / MiB:.0f} MiB"


async def test_a_large_body_of_too_many_values_is_413_before_it_is_parsed(
    api: Api, acme: TenantKey
) -> None:
    since = api.reset_peak()
    response = await raw_post(api.port, "/v1/sessions", EMPTY_OBJECTS, headers=acme.headers)
    assert response.status == 413
    error = response.error()
    assert (error["code"], error["type"]) == ("request_too_large", "invalid_request")
    assert "16384 JSON values" in error["message"]
    growth = api.peak_growth(since)
    # The body itself, once or twice while it is read; nothing parsed.
    assert growth < 48 * MiB, f"{growth / MiB:.0f} MiB"


async def test_a_large_body_that_is_one_long_string_is_parsed(api: Api, acme: TenantKey) -> None:
    """What large bodies are for: an inline image as base64. This one is 10 MB of zeros, no
    image at all (the pipeline says so): a body of 13 MiB got through to it."""
    body = json.dumps(
        {
            "quality": "lite",
            "avatar": {"image_base64": "data:image/png;base64," + "A" * (13 * MiB)},
            "transport": {
                "type": "livekit",
                "url": "wss://rtc.example.com",
                "room_name": "bodies",
                "worker_token": "lk-token-body-limits",
            },
        }
    ).encode()
    response = await raw_post(api.port, "/v1/sessions", body, headers=acme.headers)
    assert response.status == 400, response.body
    error = response.error()
    assert (error["code"], error["param"]) == ("not_an_image", "avatar.image_base64")


async def test_a_chunked_body_past_its_limit_is_413_as_it_streams(
    api: Api, acme: TenantKey
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(16 * 16):  # 16 MiB of blanks, past the 15 MiB of a session
            yield b" " * (64 * 1024)

    since = api.reset_peak()
    async with api.client(acme) as http:
        response = await http.post(
            "/v1/sessions", content=chunks(), headers={"content-type": "application/json"}
        )
    assert response.status_code == 413
    error = response.json()["error"]
    assert error["message"] == "The request body is larger than 15728640 bytes."
    assert api.peak_growth(since) < 48 * MiB


async def test_the_reviewed_png_upload_is_refused_without_decoding_it(
    api: Api, acme: TenantKey
) -> None:
    blank = io.BytesIO()
    Image.new("RGBA", (6600, 6000)).save(blank, "PNG")
    png = blank.getvalue()
    assert len(png) < 200_000
    since = api.reset_peak()
    async with api.client(acme) as http:
        response = await http.post("/v1/avatars", files={"file": ("blank.png", png)})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert (error["code"], error["param"]) == ("image_dimensions_too_large", "file")
    growth = api.peak_growth(since)
    assert growth < 32 * MiB, f"{growth / MiB:.0f} MiB"
