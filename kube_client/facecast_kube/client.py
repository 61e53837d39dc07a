"""KubeClient: the Kubernetes REST API on aiohttp, JSON in and out, for the API and the
operator alike. No worker threads, and aiohttp's C HTTP parser keeps the cost of a call to a
fraction of the official (blocking) client's (bench/api_create.py).

One connection pool per running event loop (a server has one; tests run one loop each),
bounded, so that a burst queues here rather than opening connections without end. The bearer
token is read on every request, so a rotated service-account token is picked up. Refusals are
typed (errors.py); a 429 or 503 with Retry-After is tried again within the request's timeout
(retries.py)."""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator, Mapping
from contextlib import asynccontextmanager
from typing import Any

import aiohttp
import structlog
from kubernetes import client

from facecast_kube.config import bearer_token, load_configuration, tls_context
from facecast_kube.errors import UnreachableError, error_of
from facecast_kube.paths import is_secret
from facecast_kube.retries import MAX_RETRIES, retry_after
from facecast_kube.watch import WATCH_READ_BUFFER_BYTES, WatchEvent, as_object, parse_event

JSON = "application/json"
MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
_UNREACHABLE = (aiohttp.ClientError, OSError, TimeoutError)

log = structlog.get_logger("facecast_kube")


class KubeClient:
    def __init__(
        self, configuration: client.Configuration, *, timeout: float = 30.0, connections: int = 32
    ) -> None:
        """`timeout` bounds each request, its retries included; `connections` the pool."""
        self.configuration = configuration
        self.timeout = timeout
        self._connections = connections
        self._ssl = tls_context(configuration)
        self._http: aiohttp.ClientSession | None = None
        self._http_loop: asyncio.AbstractEventLoop | None = None

    @classmethod
    def connect(
        cls, kubeconfig: str | None = None, *, timeout: float = 30.0, connections: int = 32
    ) -> KubeClient:
        """With the credentials found by the one order (config.load_configuration)."""
        return cls(load_configuration(kubeconfig), timeout=timeout, connections=connections)

    async def close(self) -> None:
        """Close the connections now (from the event loop that used them)."""
        http, loop = self._http, self._http_loop
        self.release()
        if http is not None and loop is asyncio.get_running_loop():
            await http.close()

    def release(self) -> None:
        """Forget the connections, from any thread: they close when collected."""
        self._http = self._http_loop = None

    async def request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, str] | None = None,
        content_type: str = JSON,
        headers: Mapping[str, str] | None = None,
        read: bool = True,
    ) -> dict[str, Any]:
        """The reply's JSON object ({} when `read` is False: the reply is dropped unparsed).
        KubeError (by status) if refused, UnreachableError if there was no answer."""
        sent = self._headers()
        if headers:
            sent.update(headers)
        data = None
        if body is not None:
            sent["Content-Type"] = content_type
            data = json.dumps(body)
        deadline = time.monotonic() + self.timeout
        retries = 0
        while True:
            try:
                async with self._session().request(
                    method, path, data=data, params=params, headers=sent
                ) as response:
                    if response.status < 400:
                        if not read:
                            await response.read()
                            return {}
                        return as_object(await response.json(content_type=None))
                    status, reason = response.status, response.reason
                    reply = await response.read()
                    wait = retry_after(status, response.headers.get("Retry-After"))
            except _UNREACHABLE as error:
                raise UnreachableError(f"{type(error).__name__}: {error}") from error
            if wait is None or retries >= MAX_RETRIES or time.monotonic() + wait > deadline:
                raise error_of(status, reason, reply, about_secret=is_secret(path))
            retries += 1
            log.debug("kubernetes_retrying", status=status, wait=wait, retries=retries)
            await asyncio.sleep(wait)  # the server said when: a back-off, not a condition

    @asynccontextmanager
    async def watch(
        self,
        path: str,
        *,
        version: str,
        seconds: int,
        params: Mapping[str, str] | None = None,
    ) -> AsyncIterator[AsyncIterator[WatchEvent]]:
        """One watch request from `version`: entered once the API server accepted it, its
        events (BOOKMARKs included) until the server ends it after `seconds`. ExpiredError if
        `version` is too old; UnreachableError if the stream breaks or falls silent."""
        query = {
            **(params or {}),
            "watch": "1",
            "resourceVersion": version,
            "allowWatchBookmarks": "true",
            "timeoutSeconds": str(seconds),
        }
        # No total: the API server ends the watch after `seconds`; a read that waits longer
        # than that means the connection is dead.
        timeout = aiohttp.ClientTimeout(
            total=None, sock_connect=self.timeout, sock_read=seconds + self.timeout
        )
        try:
            async with self._session().get(
                path,
                params=query,
                headers=self._headers(),
                timeout=timeout,
                read_bufsize=WATCH_READ_BUFFER_BYTES,
            ) as response:
                if response.status >= 400:
                    reply = await response.read()
                    raise error_of(
                        response.status, response.reason, reply, about_secret=is_secret(path)
                    )
                yield _events(response.content)
        except _UNREACHABLE as error:
            raise UnreachableError(f"{type(error).__name__}: {error}") from error

    def _session(self) -> aiohttp.ClientSession:
        """The connection pool of the running event loop."""
        loop = asyncio.get_running_loop()
        if self._http is None or self._http_loop is not loop:
            self._http_loop = loop
            self._http = aiohttp.ClientSession(
                base_url=self.configuration.host,
                connector=aiohttp.TCPConnector(ssl=self._ssl, limit=self._connections),
                timeout=aiohttp.ClientTimeout(total=self.timeout),
                raise_for_status=False,
            )
        return self._http

    def _headers(self) -> dict[str, str]:
        headers = {"Accept": JSON}
        token = bearer_token(self.configuration)  # read each time: a rotated token works
        if token:
            headers["Authorization"] = token
        return headers


async def _events(content: aiohttp.StreamReader) -> AsyncIterator[WatchEvent]:
    async for line in content:
        event = parse_event(line)
        if event is not None:
            yield event
