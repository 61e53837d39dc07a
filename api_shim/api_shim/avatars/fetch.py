"""Server-side download of a customer's image URL, without becoming a way into the cluster.

- only http(s), no credentials in the URL, only the usual web ports;
- the host name is resolved ONCE, every address it resolves to must be public (not loopback,
  private, link-local such as the 169.254.169.254 metadata service, CGNAT, multicast, reserved,
  or an IPv6 form of any of those), and the connection goes to that checked address (the name
  only travels in the Host header and TLS SNI, and the certificate is verified against it), so
  a second DNS answer cannot point the request somewhere else (DNS rebinding);
- redirects are followed by hand, each hop checked the same way, at most a few;
- the body is streamed and cut off past the size limit; the whole fetch has one deadline;
- no proxy or netrc from the environment, no cookies, no retries.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from collections.abc import Awaitable, Callable, Collection
from dataclasses import dataclass, field

import httpx

from api_shim.avatars.decode import MAX_IMAGE_BYTES
from api_shim.avatars.problems import ImageRejectedError, Rejection
from avatar_crds.addresses import IpAddress, is_public_address

Resolver = Callable[[str, int], Awaitable[list[str]]]

MAX_URL_LENGTH = 2048
DEFAULT_PORTS = frozenset({80, 443, 8080, 8443})
REDIRECTS = frozenset({301, 302, 303, 307, 308})
USER_AGENT = "Facecast-AvatarFetcher/1.0"


async def system_resolver(host: str, port: int) -> list[str]:
    """Every address the system resolver gives for `host` (an IP literal resolves to itself)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return list(dict.fromkeys(str(info[4][0]) for info in infos))


def _refused(message: str) -> ImageRejectedError:
    return ImageRejectedError(Rejection.IMAGE_URL_FORBIDDEN, message)


def _failed(message: str) -> ImageRejectedError:
    return ImageRejectedError(Rejection.IMAGE_FETCH_FAILED, message)


@dataclass(frozen=True)
class Target:
    """A URL whose host has been resolved and checked: connect to `address`, nowhere else."""

    url: httpx.URL
    address: str


@dataclass
class Fetcher:
    max_bytes: int = MAX_IMAGE_BYTES
    timeout_seconds: float = 10.0
    max_redirects: int = 3
    ports: Collection[int] | None = DEFAULT_PORTS  # None: any port
    resolver: Resolver = system_resolver
    address_allowed: Callable[[IpAddress], bool] = is_public_address
    transport: httpx.AsyncBaseTransport | None = field(default=None, repr=False)

    async def fetch(self, url: str) -> bytes:
        try:
            async with asyncio.timeout(self.timeout_seconds):
                return await self._fetch(url)
        except TimeoutError:
            raise _failed(
                f"The image URL did not answer within {self.timeout_seconds:g} seconds."
            ) from None

    async def _fetch(self, url: str) -> bytes:
        current = self.parse(url)
        timeout = httpx.Timeout(self.timeout_seconds)
        async with httpx.AsyncClient(
            transport=self.transport or httpx.AsyncHTTPTransport(retries=0),
            trust_env=False,
            follow_redirects=False,
            timeout=timeout,
        ) as client:
            for _hop in range(self.max_redirects + 1):
                target = await self.resolve(current)
                location = await self._get(client, target)
                if isinstance(location, bytes):
                    return location
                current = self.parse(str(current.join(location)))
        raise _failed(f"The image URL redirected more than {self.max_redirects} times.")

    def parse(self, url: str) -> httpx.URL:
        if len(url) > MAX_URL_LENGTH:
            raise ImageRejectedError(
                Rejection.INVALID_IMAGE_URL, f"The URL is longer than {MAX_URL_LENGTH} characters."
            )
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError, ValueError):
            raise ImageRejectedError(Rejection.INVALID_IMAGE_URL, "The URL is not valid.") from None
        if parsed.scheme not in ("http", "https") or not parsed.host:
            raise ImageRejectedError(
                Rejection.INVALID_IMAGE_URL, "The URL must be an absolute http(s) URL."
            )
        if parsed.userinfo:
            raise ImageRejectedError(
                Rejection.INVALID_IMAGE_URL, "The URL must not carry a user name or password."
            )
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        if self.ports is not None and port not in self.ports:
            allowed = ", ".join(str(p) for p in sorted(self.ports))
            raise _refused(f"Port {port} is not allowed for image URLs (only {allowed}).")
        return parsed.copy_with(fragment=None)

    async def resolve(self, url: httpx.URL) -> Target:
        port = url.port or (443 if url.scheme == "https" else 80)
        try:
            answers = await self.resolver(url.host, port)
        except (OSError, UnicodeError):
            raise _failed(f"The host {url.host} cannot be resolved.") from None
        addresses = []
        for answer in answers:
            try:
                addresses.append(ipaddress.ip_address(answer.split("%", 1)[0]))
            except ValueError:
                continue
        if not addresses:
            raise _failed(f"The host {url.host} cannot be resolved.")
        # One private answer among public ones is refused too: it is how rebinding starts.
        if not all(self.address_allowed(address) for address in addresses):
            raise _refused(
                "The image URL points to a private or reserved network address; only public"
                " addresses may be fetched."
            )
        return Target(url, str(addresses[0]))

    async def _get(self, client: httpx.AsyncClient, target: Target) -> bytes | str:
        """The body of a 200, or the Location of a redirect."""
        url = target.url
        host_header = url.netloc.decode("ascii")
        request = client.build_request(
            "GET",
            url.copy_with(host=target.address),
            headers={
                "Host": host_header,
                "User-Agent": USER_AGENT,
                "Accept": "image/*",
                "Accept-Encoding": "identity",
            },
            extensions={"sni_hostname": url.host} if url.scheme == "https" else {},
        )
        try:
            response = await client.send(request, stream=True)
        except httpx.HTTPError as error:
            raise _failed(f"The image URL could not be fetched ({type(error).__name__}).") from None
        try:
            if response.status_code in REDIRECTS:
                location = response.headers.get("location")
                if not location:
                    raise _failed("The image URL redirected without a Location.")
                return str(location)
            if response.status_code != 200:
                raise _failed(f"The image URL answered HTTP {response.status_code}.")
            return await self._read(response)
        finally:
            await response.aclose()

    async def _read(self, response: httpx.Response) -> bytes:
        declared = response.headers.get("content-length")
        if declared is not None and declared.isdigit() and int(declared) > self.max_bytes:
            raise ImageRejectedError(
                Rejection.IMAGE_TOO_LARGE,
                f"The image is {declared} bytes; the limit is {self.max_bytes} bytes.",
            )
        chunks: list[bytes] = []
        received = 0
        try:
            async for chunk in response.aiter_bytes():  # decoded, and counted as such
                received += len(chunk)
                if received > self.max_bytes:
                    raise ImageRejectedError(
                        Rejection.IMAGE_TOO_LARGE,
                        f"The image is larger than the limit of {self.max_bytes} bytes.",
                    )
                chunks.append(chunk)
        except httpx.HTTPError as error:
            raise _failed(f"The image download failed ({type(error).__name__}).") from None
        return b"".join(chunks)
