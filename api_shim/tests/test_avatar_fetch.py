"""Server-side URL fetching: what is refused before any connection is made (private, loopback,
link-local and otherwise non-public addresses, whatever name or notation points there), and the
limits of real downloads from a small HTTP server on 127.0.0.1 (the only address a test may
serve from; those tests allow exactly that one address on top of the public ones)."""

from __future__ import annotations

import asyncio
import ipaddress
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import httpx
import pytest

from api_shim.avatars.fetch import Fetcher
from api_shim.avatars.problems import ImageRejectedError, Rejection
from avatar_crds.addresses import AddressAllowList, is_public_address

pytestmark = pytest.mark.anyio


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.0.0.1",
        "10.96.0.1",  # a typical Kubernetes service
        "172.16.5.4",
        "192.168.1.1",
        "169.254.169.254",  # cloud metadata
        "100.100.100.200",  # Alibaba Cloud metadata (CGNAT range)
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "::1",
        "::",
        "fe80::1",
        "fd00:ec2::254",  # AWS metadata over IPv6
        "::ffff:127.0.0.1",
        "::ffff:169.254.169.254",
        "64:ff9b::a9fe:a9fe",  # NAT64 of 169.254.169.254
        "2002:a00:1::",  # 6to4 of 10.0.0.1
        "ff02::1",
    ],
)
def test_non_public_addresses_are_not_public(address: str) -> None:
    assert not is_public_address(ipaddress.ip_address(address))


@pytest.mark.parametrize("address", ["8.8.8.8", "93.184.216.34", "2606:4700:4700::1111"])
def test_public_addresses_are_public(address: str) -> None:
    assert is_public_address(ipaddress.ip_address(address))


class NoNetwork(httpx.AsyncBaseTransport):
    """Fails the test if anything is sent at all."""

    def __init__(self) -> None:
        self.requests: list[httpx.Request] = []

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        raise AssertionError(f"a request was sent to {request.url}")


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1/avatar.jpg",
        "http://localhost/avatar.jpg",  # a name that resolves to loopback
        "http://[::1]/avatar.jpg",
        "http://2130706433/avatar.jpg",  # 127.0.0.1 as one decimal number
        "http://10.0.0.1/avatar.jpg",
        "https://10.96.0.1/api/v1/secrets",
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[::ffff:169.254.169.254]/latest/meta-data/",
        "http://0.0.0.0:8080/avatar.jpg",
    ],
)
async def test_urls_to_private_addresses_are_refused_without_connecting(url: str) -> None:
    transport = NoNetwork()
    with pytest.raises(ImageRejectedError) as caught:
        await Fetcher(transport=transport).fetch(url)
    assert caught.value.rejection is Rejection.IMAGE_URL_FORBIDDEN
    assert caught.value.status == 400
    assert transport.requests == []


async def test_a_name_with_any_private_answer_is_refused() -> None:
    async def rebinding(host: str, port: int) -> list[str]:
        return ["93.184.216.34", "10.0.0.5"]

    transport = NoNetwork()
    with pytest.raises(ImageRejectedError) as caught:
        await Fetcher(resolver=rebinding, transport=transport).fetch("https://img.example/a.jpg")
    assert caught.value.rejection is Rejection.IMAGE_URL_FORBIDDEN
    assert transport.requests == []


@pytest.mark.parametrize(
    ("url", "code"),
    [
        ("ftp://example.com/a.jpg", Rejection.INVALID_IMAGE_URL),
        ("file:///etc/passwd", Rejection.INVALID_IMAGE_URL),
        ("https://user:secret@example.com/a.jpg", Rejection.INVALID_IMAGE_URL),
        ("not a url", Rejection.INVALID_IMAGE_URL),
        ("https://example.com:22/a.jpg", Rejection.IMAGE_URL_FORBIDDEN),
        ("https://example.com:6443/a.jpg", Rejection.IMAGE_URL_FORBIDDEN),  # an API server
    ],
)
async def test_bad_urls_and_ports_are_refused(url: str, code: Rejection) -> None:
    transport = NoNetwork()
    with pytest.raises(ImageRejectedError) as caught:
        await Fetcher(transport=transport).fetch(url)
    assert caught.value.rejection is code
    assert transport.requests == []


# --- real downloads from 127.0.0.1 ---------------------------------------------------------------

Handler = Callable[[str, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class ImageServer:
    port: int
    hosts: list[str] = field(default_factory=list)
    release: asyncio.Event = field(default_factory=asyncio.Event)

    def url(self, path: str, host: str = "127.0.0.1") -> str:
        return f"http://{host}:{self.port}{path}"


def respond(status: str, headers: dict[str, str], body: bytes = b"") -> bytes:
    lines = [f"HTTP/1.1 {status}", "Connection: close", *(f"{k}: {v}" for k, v in headers.items())]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


IMAGE = b"\xff\xd8\xff\xe0 not really a jpeg, the fetcher does not look" * 10


@pytest.fixture
async def server() -> AsyncIterator[ImageServer]:
    state = ImageServer(port=0)

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = (await reader.readuntil(b"\r\n\r\n")).decode()
        path = head.split(" ", 2)[1]
        headers = dict(line.split(": ", 1) for line in head.split("\r\n")[1:] if ": " in line)
        state.hosts.append(headers.get("Host", ""))
        if path == "/ok.jpg":
            writer.write(respond("200 OK", {"Content-Length": str(len(IMAGE))}, IMAGE))
        elif path == "/declared-too-big":
            writer.write(respond("200 OK", {"Content-Length": "20000000"}, IMAGE))
        elif path == "/streams-too-big":
            writer.write(respond("200 OK", {"Transfer-Encoding": "chunked"}))
            chunk = b"x" * 4096
            for _ in range(8):  # 32 KiB, against a 16 KiB limit below
                writer.write(f"{len(chunk):x}\r\n".encode() + chunk + b"\r\n")
            writer.write(b"0\r\n\r\n")
        elif path == "/to-ok":
            writer.write(respond("302 Found", {"Location": "/ok.jpg", "Content-Length": "0"}))
        elif path == "/to-private":
            location = "http://10.0.0.1/ok.jpg"
            writer.write(respond("302 Found", {"Location": location, "Content-Length": "0"}))
        elif path == "/to-metadata":
            location = "http://169.254.169.254/latest/meta-data/"
            writer.write(respond("301 Moved", {"Location": location, "Content-Length": "0"}))
        elif path == "/loop":
            writer.write(respond("302 Found", {"Location": "/loop", "Content-Length": "0"}))
        elif path == "/hang":
            await state.release.wait()  # never answers while the test runs
        else:
            writer.write(respond("404 Not Found", {"Content-Length": "0"}))
        await writer.drain()
        writer.close()

    listener = await asyncio.start_server(handle, "127.0.0.1", 0)
    state.port = listener.sockets[0].getsockname()[1]
    async with listener:
        yield state
        state.release.set()


# The image servers of these tests listen on loopback, which the platform allows here.
allow_test_server = AddressAllowList.parse(networks="127.0.0.1/32").allows_address


def fetcher(**options: object) -> Fetcher:
    settings: dict[str, object] = {"ports": None, "address_allowed": allow_test_server}
    settings.update(options)
    return Fetcher(**settings)  # type: ignore[arg-type]


async def test_an_image_is_downloaded(server: ImageServer) -> None:
    assert await fetcher().fetch(server.url("/ok.jpg")) == IMAGE


async def test_redirects_are_followed_and_each_hop_is_checked(server: ImageServer) -> None:
    assert await fetcher().fetch(server.url("/to-ok")) == IMAGE
    for path in ("/to-private", "/to-metadata"):
        with pytest.raises(ImageRejectedError) as caught:
            await fetcher().fetch(server.url(path))
        assert caught.value.rejection is Rejection.IMAGE_URL_FORBIDDEN


async def test_redirect_loops_end(server: ImageServer) -> None:
    with pytest.raises(ImageRejectedError) as caught:
        await fetcher(max_redirects=3).fetch(server.url("/loop"))
    assert caught.value.rejection is Rejection.IMAGE_FETCH_FAILED
    assert len(server.hosts) == 4  # the first request and three redirects, no more


async def test_the_connection_goes_to_the_checked_address_under_the_original_name(
    server: ImageServer,
) -> None:
    """The name is resolved once; the request carries it in Host, the socket goes to the
    address that was checked (a second resolution cannot redirect it)."""
    answers = iter([["127.0.0.1"], ["10.0.0.1"]])

    async def resolver(host: str, port: int) -> list[str]:
        assert host == "images.example"
        return next(answers)

    got = await fetcher(resolver=resolver).fetch(server.url("/ok.jpg", host="images.example"))
    assert got == IMAGE
    assert server.hosts == [f"images.example:{server.port}"]


async def test_oversize_downloads_are_cut_off(server: ImageServer) -> None:
    for path in ("/declared-too-big", "/streams-too-big"):
        with pytest.raises(ImageRejectedError) as caught:
            await fetcher(max_bytes=16 * 1024).fetch(server.url(path))
        assert (caught.value.rejection, caught.value.status) == (Rejection.IMAGE_TOO_LARGE, 413)


async def test_errors_and_silence_are_fetch_failures(server: ImageServer) -> None:
    with pytest.raises(ImageRejectedError) as missing:
        await fetcher().fetch(server.url("/missing.jpg"))
    assert missing.value.rejection is Rejection.IMAGE_FETCH_FAILED
    assert "404" in missing.value.message
    with pytest.raises(ImageRejectedError) as silent:
        await fetcher(timeout_seconds=0.5).fetch(server.url("/hang"))
    assert silent.value.rejection is Rejection.IMAGE_FETCH_FAILED
